/**
 * Request bodies in the listener: ones nobody reads (a middleware that answers first, a chunked
 * body over the limit) and ones that came whole with their heads, past the read-ahead.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { Buffer } from "node:buffer";
import { listenerHarness, ownListener } from "./harness.ts";
import { echoTarget } from "../helpers/raw-client.ts";

setDefaultTimeout(20_000);
const { backend, proxy } = listenerHarness();

ownListener("a request body nobody reads", () => {
  test("a middleware answers before reading it: Connection: close, the connection closes, nothing is forwarded", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    // Part of a declared body, then a request pipelined behind it that must not be served.
    c.write(`POST /deny HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 100000\r\n\r\n${"a".repeat(5000)}`);
    const r = await c.readResponse();
    if (r === "closed") throw new Error("no response");
    expect(r.status).toBe(401);
    expect(r.get("connection")).toBe("close");
    expect(await c.waitClosed(3000)).toBe(true);
    await p.idle();
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });

  test("a middleware answers before reading a body that had all arrived: the next pipelined request is served", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write("POST /deny HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    const a = await c.readResponse();
    expect(a !== "closed" && a.status).toBe(401);
    const b = await c.readResponse();
    expect(b !== "closed" && b.body.toString()).toBe("GET /next");
    await p.idle();
    await p.stopPromptly();
  });

  for (const middleware of [false, true]) {
    test(
      `a body that came whole in its head's read goes upstream as sent, again on a retry, and the request pipelined behind it next ${
        middleware ? "(middleware route: the body read as a stream)" : "(direct route: sent from the read)"
      }`,
      async () => {
        // The first PUT is answered 503 and retried (PUT is idempotent): its body is sent twice.
        let puts = 0;
        const be = await backend((req) =>
          req.method === "PUT" && puts++ === 0 ? "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n" : echoTarget(req)
        );
        const p = await proxy(be, { middleware, retry: "    retry: { attempts: 2, backoff: { base: 1ms, max: 1ms } }\n" });
        const c = await p.client();
        const body = Array.from({ length: 4096 }, (_, i) => String.fromCharCode(33 + (i % 90))).join("");
        c.write(`PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}GET /next HTTP/1.1\r\nHost: x\r\n\r\n`);
        const a = await c.readResponse();
        expect(a !== "closed" && [a.status, a.body.toString()]).toEqual([200, "PUT /put"]);
        const b = await c.readResponse();
        expect(b !== "closed" && b.body.toString()).toBe("GET /next");
        const puts2 = be.requests.filter((r) => r.method === "PUT");
        expect(puts2.map((r) => [r.get("content-length"), r.body.toString("latin1")])).toEqual([
          [String(body.length), body],
          [String(body.length), body],
        ]);
        await p.idle();
        await p.stopPromptly();
      },
    );
  }

  for (const middleware of [false, true]) {
    test(`a chunked body over max_request_body mid-stream: 413, connection closed, the backend never gets it whole ${middleware ? "(middleware route)" : "(direct route)"}`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware, limits: "  max_request_body: 10000\n  client_idle_timeout: 2s\n  client_body_timeout: 5s" });
      const c = await p.client();
      c.write("POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
      // The backend gets the request head and a first piece before the limit is crossed.
      c.write(`1000\r\n${"a".repeat(0x1000)}\r\n`);
      await be.waitBytes(0x1000);
      c.write(`2000\r\n${"b".repeat(0x2000)}\r\n`);
      c.write(`10\r\n${"c".repeat(16)}\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await c.readResponse();
      expect(r !== "closed" && r.status).toBe(413);
      expect(r !== "closed" && r.get("connection")).toBe("close");
      expect(await c.waitClosed(3000)).toBe(true);
      await p.idle();
      await be.waitClosed(0);
      // The backend's connection was cut inside the body: no request was completed, none followed.
      expect(be.requests).toEqual([]);
      expect(be.allBytes()).not.toContain("0\r\n\r\n");
      await p.stopPromptly();
    });
  }
});

ownListener("request bodies on a direct route", () => {
  for (const attempts of [1, 2]) {
    test(`bodies that came whole with their heads go upstream intact, one past the read-ahead too; the request behind them is served (retry attempts ${attempts})`, async () => {
      const be = await backend();
      const p = await proxy(be, { retry: `    retry: { attempts: ${attempts}, buffer_body_limit: 1mb }\n` });
      const c = await p.client();
      const small = "s".repeat(4096);
      // Past the read-ahead (64 KiB): reading pauses until the proxy takes the bytes waiting.
      const big = Buffer.alloc(300 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
      c.write(
        Buffer.concat([
          Buffer.from(`POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: ${small.length}\r\n\r\n${small}`),
          Buffer.from(`POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`),
          big,
          Buffer.from("GET /after HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]),
      );
      for (const want of ["POST /small", "POST /big", "GET /after"]) {
        const r = await c.readResponse();
        expect(r !== "closed" && r.body.toString()).toBe(want);
      }
      expect(be.requests.map((r) => [r.target, r.body.length, r.framing])).toEqual([["/small", 4096, "length"], [
        "/big",
        big.length,
        "length",
      ], ["/after", 0, "none"]]);
      expect(be.requests[0]!.body.toString()).toBe(small);
      expect(be.requests[1]!.body.equals(big)).toBe(true);
      await p.idle();
      await p.stopPromptly();
    });
  }

  test("a body sent after its head (Expect: 100-continue) is asked for, waited for and arrives intact", async () => {
    const be = await backend();
    const p = await proxy(be, { retries: true });
    const c = await p.client();
    c.write("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    // Nothing of the body has come: the proxy asks for it when it reads it.
    const interim = await c.readResponse();
    expect(interim !== "closed" && interim.status).toBe(100);
    c.write("hello");
    c.write("world");
    const r = await c.readResponse();
    expect(r !== "closed" && r.body.toString()).toBe("POST /slow");
    expect(be.requests[0]!.body.toString()).toBe("helloworld");
    await p.idle();
    await p.stopPromptly();
  });
});
