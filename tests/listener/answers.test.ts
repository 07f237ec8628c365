/**
 * The listener's answers: streamed as they come, HTTP/1.0, HEAD, Connection: close, and response
 * headers (cookies, non-ASCII bytes, what a middleware's Response carries).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import { echoTarget } from "../helpers/raw-client.ts";
import { listenerHarness, ownListener, signal, waitFor, within } from "./harness.ts";

setDefaultTimeout(20_000);
const { backend, proxy } = listenerHarness();

ownListener("streamed answers", () => {
  for (const middleware of [false, true]) {
    test(`the head and first piece reach the client while the backend holds the rest ${middleware ? "(middleware route)" : "(direct route)"}`, async () => {
      const release = signal();
      const be = await backend(() => async (s: Socket) => {
        s.write("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n");
        await release.promise;
        s.write("7\r\nsecond\n\r\n0\r\n\r\n");
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
      // The rest is sent only once the first event was seen: a proxy that waits for more deadlocks.
      const seen = await within(waitFor(c, "first\n"), 3000, "the first event");
      expect(seen).toStartWith("HTTP/1.1 200");
      release.resolve();
      const r = await c.readResponse();
      expect(r !== "closed" && r.body.toString()).toBe("first\nsecond\n");
      await p.idle();
      await p.stopPromptly();
    });
  }

  test("a middleware's Response that ends at once goes out with its real length, not a stale Content-Length", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write(
      "GET /a-long-target-to-make-the-length-differ HTTP/1.1\r\nHost: x\r\nX-Replace: 1\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const r = await c.readResponse();
    if (r === "closed") throw new Error("closed");
    expect(r.get("content-length")).toBe("9");
    expect(r.body.toString()).toBe("replaced\n");
    const n = await c.readResponse();
    expect(n !== "closed" && n.body.toString()).toBe("GET /after");
    await p.idle();
    await p.stopPromptly();
  });
});

ownListener("HTTP/1.0, HEAD, Connection: close", () => {
  test("a streamed response of unknown length to an HTTP/1.0 client ends with the connection, whole", async () => {
    const body = Buffer.alloc(200_000);
    for (let i = 0; i < body.length; i++) body[i] = i & 0xff;
    const be = await backend(() => async (s: Socket) => {
      s.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
      for (let off = 0; off < body.length; off += 50_000) {
        s.write(`${(50_000).toString(16)}\r\n`);
        s.write(body.subarray(off, off + 50_000));
        s.write("\r\n");
        await new Promise((r) => setImmediate(r));
      }
      s.write("0\r\n\r\n");
    });
    const p = await proxy(be);
    const c = await p.client();
    c.write("GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const r = await c.readResponse({ timeoutMs: 5000 });
    if (r === "closed") throw new Error("no response");
    expect(r.framing).toBe("close");
    expect(r.get("connection")).toBe("close");
    expect(Buffer.compare(r.body, body)).toBe(0);
    await p.idle();
    await p.stopPromptly();
  });

  test("HEAD through a middleware route: the backend's length, no body, the connection stays in sync", async () => {
    const be = await backend((req) =>
      req.method === "HEAD"
        ? "HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx-h: 1\r\n\r\n"
        : "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world"
    );
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /h HTTP/1.1\r\nHost: x\r\n\r\n");
    const h = await c.readResponse({ method: "HEAD" });
    if (h === "closed") throw new Error("no response");
    expect(h.status).toBe(200);
    expect(h.get("content-length")).toBe("11");
    expect(h.get("x-h")).toBe("1");
    const g = await c.readResponse();
    expect(g !== "closed" && g.body.toString()).toBe("hello world");
    await p.idle();
    await p.stopPromptly();
  });

  test("a 304 through a middleware route keeps the backend's Content-Length (never a made-up 0)", async () => {
    const be = await backend((req) =>
      req.target === "/304"
        ? 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 10\r\n\r\n'
        : 'HTTP/1.1 304 Not Modified\r\netag: "v2"\r\n\r\n'
    );
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write("GET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /304-bare HTTP/1.1\r\nHost: x\r\n\r\n");
    const a = await c.readResponse();
    if (a === "closed") throw new Error("closed");
    expect(a.status).toBe(304);
    expect([undefined, "10"]).toContain(a.get("content-length"));
    const b = await c.readResponse();
    if (b === "closed") throw new Error("closed");
    expect(b.status).toBe(304);
    expect(b.get("content-length")).toBeUndefined();
    await p.idle();
    await p.stopPromptly();
  });

  test("Connection: close from the backend is not passed on: the client's connection keeps serving", async () => {
    const be = await backend((req) => `HTTP/1.1 200 OK\r\ncontent-length: ${req.target.length}\r\nconnection: close\r\n\r\n${req.target}`);
    const p = await proxy(be);
    const c = await p.client();
    for (const t of ["/one", "/two", "/three"]) {
      c.write(`GET ${t} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await c.readResponse();
      if (r === "closed") throw new Error("closed");
      expect(r.body.toString()).toBe(t);
      expect(r.get("connection")).toBeUndefined();
    }
    await p.idle();
    await p.stopPromptly();
  });
});

ownListener("response headers", () => {
  for (
    const [what, req] of [
      ["with a body", "GET /c HTTP/1.1\r\nHost: x\r\nX-Cookies: 1\r\n\r\n"],
      ["without a body (204)", "GET /c HTTP/1.1\r\nHost: x\r\nX-Cookies: 1\r\nX-Status: 204\r\n\r\n"],
      ["to HEAD", "HEAD /c HTTP/1.1\r\nHost: x\r\nX-Cookies: 1\r\n\r\n"],
    ] as const
  ) {
    test(`a middleware's Response ${what}: every Set-Cookie separately, latin1 bytes kept`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware: true });
      const c = await p.client();
      c.write(req);
      const r = await c.readResponse({ method: req.startsWith("HEAD") ? "HEAD" : "GET" });
      if (r === "closed") throw new Error("closed");
      expect(r.all("set-cookie")).toEqual(["a=1; Path=/", "b=2; Path=/; HttpOnly", "c=3"]);
      // The head is read as latin1: one byte per character.
      expect(r.get("x-latin")).toBe("caf\u00e9 \u00ff");
      c.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
      const n = await c.readResponse();
      expect(n !== "closed" && n.body.toString()).toBe("GET /after");
      await p.idle();
      await p.stopPromptly();
    });
  }

  for (
    const [what, target] of [
      ["small", "/small"],
      ["streamed", "/streamed"],
      ["204", "/204"],
    ] as const
  ) {
    test(`a backend header with bytes >= 0x80 reaches the client byte for byte (${what})`, async () => {
      const value = "caf\xe9 \xff\x80";
      const be = await backend((req) => {
        if (req.target === "/204") return `HTTP/1.1 204 No Content\r\nx-latin: ${value}\r\n\r\n`;
        if (req.target === "/after") return echoTarget(req);
        if (req.target === "/small") return `HTTP/1.1 200 OK\r\nx-latin: ${value}\r\ncontent-length: 2\r\n\r\nok`;
        // Over the 64 KiB read whole: streamed.
        return `HTTP/1.1 200 OK\r\nx-latin: ${value}\r\ncontent-length: 100002\r\n\r\nok${".".repeat(100_000)}`;
      });
      const p = await proxy(be);
      const c = await p.client();
      c.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await c.readResponse();
      if (r === "closed") throw new Error("closed");
      expect(Buffer.from(r.get("x-latin")!, "latin1")).toEqual(Buffer.from(value, "latin1"));
      if (target !== "/204") expect(r.body.subarray(0, 2).toString()).toBe("ok");
      const n = await c.readResponse();
      expect(n !== "closed" && n.body.toString()).toBe("GET /after");
      await p.idle();
      await p.stopPromptly();
    });
  }
});
