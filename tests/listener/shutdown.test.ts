/**
 * Graceful shutdown on the listener, and FULCRUM_BUN_SERVE=1 switching the proxy port back to
 * Bun.serve.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Socket } from "node:net";
import { echoTarget } from "../helpers/raw-client.ts";
import { listenerHarness, outcomeOf, ownListener, type Proxy, SHUTDOWN_TIMEOUT_MS, signal, within } from "./harness.ts";

setDefaultTimeout(20_000);
const { backend, proxy } = listenerHarness();

ownListener("graceful shutdown", () => {
  test("a request in flight is answered with Connection: close, an idle connection closes at once", async () => {
    const got = signal<Socket>();
    const release = signal();
    const be = await backend((req) =>
      req.target === "/slow"
        ? async (s: Socket) => {
          got.resolve(s);
          await release.promise;
          s.write("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate");
        }
        : echoTarget(req)
    );
    const p = await proxy(be);
    const idle = await p.client();
    idle.write("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(outcomeOf(await idle.readResponse())).toBe(200);
    const busy = await p.client();
    busy.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    await within(got.promise, 3000, "backend got the request");
    const t0 = performance.now();
    const stopping = p.f.stop();
    expect(await idle.waitClosed(3000)).toBe(true);
    release.resolve();
    const r = await busy.readResponse();
    if (r === "closed") throw new Error("no answer");
    expect(r.body.toString()).toBe("late");
    expect(r.get("connection")).toBe("close");
    expect(await busy.waitClosed(3000)).toBe(true);
    await within(stopping, SHUTDOWN_TIMEOUT_MS + 2000, "shutdown");
    expect(performance.now() - t0).toBeLessThan(SHUTDOWN_TIMEOUT_MS / 2);
  });
});

describe("FULCRUM_BUN_SERVE=1", () => {
  test("switches the proxy port back to Bun.serve, which still proxies (bodies both ways, streaming)", async () => {
    const be = await backend((req) =>
      req.target === "/stream"
        ? (s: Socket) => {
          s.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
          return new Promise<void>((r) => setImmediate(() => s.write("6\r\n world\r\n0\r\n\r\n", () => r())));
        }
        : `HTTP/1.1 200 OK\r\ncontent-length: ${req.body.length}\r\n\r\n${req.body.toString("latin1")}`
    );
    const previous = process.env.FULCRUM_BUN_SERVE;
    process.env.FULCRUM_BUN_SERVE = "1";
    let p: Proxy;
    try {
      p = await proxy(be);
    } finally {
      if (previous === undefined) delete process.env.FULCRUM_BUN_SERVE;
      else process.env.FULCRUM_BUN_SERVE = previous;
    }
    const c = await p.client();
    c.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nping\r\n0\r\n\r\n");
    const r = await c.readResponse();
    if (r === "closed") throw new Error("closed");
    expect(r.body.toString()).toBe("ping");
    // Bun.serve's own head (its Date header is capitalised; ours is not).
    expect(r.head).toContain("\r\nDate: ");
    c.write("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    const s = await c.readResponse();
    expect(s !== "closed" && s.body.toString()).toBe("hello world");
    await p.idle();
    await p.stopPromptly();
  });
});
