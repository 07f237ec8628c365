/**
 * The listener when a client leaves at every stage (mid-head, mid-body, waiting, mid-stream, half-
 * close) and when a backend fails mid-stream: the backend's request is aborted, nothing leaks.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import { holdOpen, listenerHarness, signal, waitFor, within } from "./harness.ts";

setDefaultTimeout(20_000);
const { backend, proxy } = listenerHarness();

describe("a client that leaves", () => {
  test("mid-head: nothing is dispatched, shutdown is prompt", async () => {
    const be = await backend();
    const p = await proxy(be);
    const c = await p.client();
    c.write("GET /half HTTP/1.1\r\nHost: x\r\nX-Partial: y");
    c.destroy();
    await p.idle();
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });

  for (const middleware of [false, true]) {
    const where = middleware ? "(middleware route)" : "(direct route)";

    test(`mid-body upload, Content-Length ${where}: the backend's request is aborted`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware });
      // Big enough to be streamed, not buffered for a retry.
      const c = await p.client();
      c.write(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n${"a".repeat(1000)}`);
      // Wait for the backend to have the request head (its connection is then busy with our body).
      // The backend has the head and part of the body: its connection is busy with our request.
      const conn = await be.waitBytes(1000);
      c.destroy();
      await be.waitClosed(conn);
      await p.idle();
      expect(be.requests).toEqual([]);
      await p.stopPromptly();
    });

    test(`mid-body upload, chunked ${where}: the backend's request is aborted`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write(`POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n${"a".repeat(1000)}\r\n`);
      // The backend has the head and part of the body: its connection is busy with our request.
      const conn = await be.waitBytes(1000);
      c.destroy();
      await be.waitClosed(conn);
      await p.idle();
      expect(be.requests).toEqual([]);
      await p.stopPromptly();
    });

    test(`while waiting for the backend ${where}`, async () => {
      const got = signal<Socket>();
      const be = await backend((_req) => (s: Socket) => {
        got.resolve(s);
        return new Promise<void>((r) => s.once("close", () => r()));
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
      const s = await within(got.promise, 3000, "backend got the request");
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      c.destroy();
      await within(closed, 3000, "backend connection closed");
      await p.idle();
      await p.stopPromptly();
    });

    test(`half-closes (FIN) while waiting for the backend ${where}: the request is aborted, as Bun.serve does`, async () => {
      const got = signal<Socket>();
      const be = await backend(() => (s: Socket) => {
        got.resolve(s);
        return new Promise<void>((r) => s.once("close", () => r()));
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
      const s = await within(got.promise, 3000, "backend got the request");
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      c.end();
      await within(closed, 3000, "backend connection closed");
      expect(await c.waitClosed(3000)).toBe(true);
      await p.idle();
      await p.stopPromptly();
    });

    test(`mid-streamed response ${where}`, async () => {
      const got = signal<Socket>();
      const be = await backend(() => holdOpen((s) => got.resolve(s)));
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
      // The head and the first piece reach the client although the backend holds the rest.
      const seen = await c.waitBytes(1, 3000).then(() => within(waitFor(c, "first\n"), 3000, "first event"));
      expect(seen).toContain("HTTP/1.1 200");
      const s = await got.promise;
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      c.destroy();
      await within(closed, 3000, "backend connection closed");
      await p.idle();
      await p.stopPromptly();
    });

    test(`during Expect: 100-continue ${where}`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("POST /cont HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\nExpect: 100-continue\r\n\r\n");
      const r = await c.readResponse();
      expect(r !== "closed" && r.status).toBe(100);
      c.destroy();
      await p.idle();
      expect(be.requests).toEqual([]);
      await p.stopPromptly();
    });
  }
});

describe("a backend that fails mid-stream", () => {
  for (const middleware of [false, true]) {
    test(`the client's connection is cut, not ended cleanly ${middleware ? "(middleware route)" : "(direct route)"}`, async () => {
      const be = await backend(() => (s: Socket) => {
        // A declared length, two pieces sent, then the backend dies.
        s.write("HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n");
        s.write(Buffer.alloc(70_000, 98));
        s.write(Buffer.alloc(30_000, 99), () => s.destroy());
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /dies HTTP/1.1\r\nHost: x\r\n\r\n");
      await c.waitBytes(12, 3000);
      if (c.pending.toString("latin1").startsWith("HTTP/1.1 200")) {
        // The head went out: the only honest end is a cut connection, short of the length.
        expect(await c.waitClosed(3000)).toBe(true);
        expect(c.received.length).toBeLessThan(300_000);
      } else {
        // Before any byte was written, an error status is honest too.
        const r = await c.readResponse();
        expect(r !== "closed" && r.status).toBeGreaterThanOrEqual(500);
      }
      await p.idle();
      await p.stopPromptly();
    });
  }
});
