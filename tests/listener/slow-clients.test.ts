/**
 * Slow peers in the listener: a request slower than the idle timer, a client that stops reading,
 * pipelining without reading, a head that trickles in.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import { RawClient } from "../helpers/raw-client.ts";
import { listenerHarness, ownListener, signal, within } from "./harness.ts";

setDefaultTimeout(20_000);
const { cleanups, backend, proxy, pacedReader } = listenerHarness();

ownListener("a request slower than client_idle_timeout", () => {
  test("is answered: the idle timer, left running, is ignored while a request is in flight", async () => {
    // Bun checks socket timeouts on a 4 s tick: a 1 s timer armed at connect fires within 4 s,
    // while the backend takes 5 s to answer.
    const be = await backend((req) => async (s: Socket) => {
      if (req.target === "/slow") await new Promise((r) => setTimeout(r, 5000));
      s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${req.target.length}\r\n\r\n${req.target}`);
    });
    const p = await proxy(be, { limits: "  client_idle_timeout: 1s" });
    const c = await RawClient.connect(p.port);
    cleanups.push(() => c.destroy());
    c.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    const slow = await c.readResponse({ timeoutMs: 10_000 });
    expect(slow === "closed" ? "closed" : slow.body.toString()).toBe("/slow");
    // The connection still serves.
    c.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    const after = await c.readResponse();
    expect(after === "closed" ? "closed" : after.body.toString()).toBe("/after");
  }, 15_000);
});

ownListener("a client that stops reading", () => {
  test("is cut after client_idle_timeout and its backend released; one that reads slowly is not cut", async () => {
    // Bun checks socket timeouts on a 4 s tick ((seconds + 3) >> 2 ticks): 5 s fires 4 to 8 s
    // after the last time the timer was armed.
    const IDLE_S = 5;
    const SLOW_SIZE = 24 * 1024 * 1024;
    const big = Buffer.alloc(1 << 20, 100);
    const released = signal();
    const be = await backend((req) => async (s: Socket) => {
      const size = req.target === "/stalled" ? 64 * big.length : SLOW_SIZE;
      if (req.target === "/stalled") s.once("close", () => released.resolve());
      s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`);
      for (let sent = 0; sent < size && !s.destroyed; sent += big.length) {
        if (!s.write(big))
          await new Promise<void>((r) => {
            const go = () => (s.off("drain", go), s.off("close", go), r());
            s.on("drain", go).on("close", go);
          });
      }
    });
    const p = await proxy(be, { limits: `  client_idle_timeout: ${IDLE_S}s` });

    // The stalled client: reads the first bytes, then never again.
    const firstBytes = signal();
    const stalled = await Bun.connect({
      hostname: "127.0.0.1",
      port: p.port,
      socket: {
        data(s) {
          s.pause();
          firstBytes.resolve();
        },
      },
    });
    cleanups.push(() => stalled.terminate());
    stalled.write("GET /stalled HTTP/1.1\r\nHost: x\r\n\r\n");

    // The slow reader: one read (up to 512 KiB) every 200 ms, 24 MiB: about 10 s, longer than the
    // idle timer can last unless each read re-arms it.
    let total = 0;
    let paused = false;
    const done = Promise.withResolvers<void>();
    const slow = await Bun.connect({
      hostname: "127.0.0.1",
      port: p.port,
      socket: {
        data(s, d) {
          total += d.length;
          if (total >= SLOW_SIZE) return done.resolve();
          s.pause();
          paused = true;
        },
        close: () => done.reject(new Error(`slow reader cut after ${total} of ${SLOW_SIZE} bytes`)),
      },
    });
    cleanups.push(() => slow.terminate());
    const pace = setInterval(() => {
      if (paused) {
        paused = false;
        slow.resume();
      }
    }, 200);
    cleanups.push(() => clearInterval(pace));
    slow.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");

    await within(firstBytes.promise, 3000, "the stalled client's first bytes");
    const started = performance.now();
    await within(released.promise, (2 * IDLE_S + 4) * 1000, "the stalled client's backend connection released");
    expect(performance.now() - started).toBeGreaterThan(1000);
    await within(done.promise, 30_000, "the slow reader's whole answer");
    expect(performance.now() - started).toBeGreaterThan(2 * IDLE_S * 1000 - 4000);
    await p.idle();
    await p.stopPromptly();
  }, 40_000);
});

ownListener("pipelining", () => {
  test("answers to pipelined requests wait for the client to read the ones before (no unbounded queue)", async () => {
    const N = 500;
    const PIECE = 64 * 1024; // read whole by the upstream client: each answer is one buffer
    const piece = "x".repeat(PIECE);
    const be = await backend(() => `HTTP/1.1 200 OK\r\ncontent-length: ${PIECE}\r\n\r\n${piece}`);
    const p = await proxy(be);
    let request = "";
    for (let i = 0; i < N; i++) request += `GET /p?${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    let headLength = 0;
    // Answers fetched from the backend but not yet read by the client: held in Fulcrum or in the
    // kernel's buffers. Sampled at every read.
    let ahead = 0;
    // A slow reader: one read every 40 ms, ~2.5 s in all.
    const { sock, done } = await pacedReader(p.port, 40, (d, total) => {
      if (headLength === 0) headLength = Buffer.from(d).indexOf("\r\n\r\n") + 4;
      ahead = Math.max(ahead, be.requests.length * (headLength + PIECE) - total);
      return total >= N * (headLength + PIECE);
    });
    sock.write(request);
    await within(done, 15_000, "all the answers");
    expect(be.requests.length).toBe(N);
    // Before: the answers were fetched and queued as fast as the backend gave them (~25 MB ahead
    // of a reader that had read a few); now the kernel's buffers and one answer (~5 MB).
    expect(ahead).toBeLessThan(15 * 1024 * 1024);
    await p.idle();
    await p.stopPromptly();
  });

  test("a slow reader's answers stay intact while other clients' answers go out (one shared write buffer)", async () => {
    // Whole answers go out through one reused buffer; what the kernel does not take at once must be
    // copied, or the next answer on another connection overwrites it before it is sent.
    const N = 150;
    const SIZE = 60_000;
    const letter = (target: string) => (target.startsWith("/b") ? "Z" : String.fromCharCode(97 + (Number(target.split("?")[1]) % 26)));
    const be = await backend((req) => `HTTP/1.1 200 OK\r\ncontent-length: ${SIZE}\r\n\r\n${letter(req.target).repeat(SIZE)}`);
    const p = await proxy(be);
    let request = "";
    for (let i = 0; i < N; i++) request += `GET /a?${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const parts: Buffer[] = [];
    const { sock, done } = await pacedReader(p.port, 30, (d, total) => {
      parts.push(Buffer.from(d));
      return total >= N * SIZE && Buffer.concat(parts).toString("latin1").split("HTTP/1.1 200 OK").length > N;
    });
    sock.write(request);
    // Meanwhile another client's answers (all "Z") go through the same buffer.
    let others = 0;
    let finished = false;
    done.then(() => (finished = true), () => (finished = true));
    while (!finished && others < 2000) {
      const r = await fetch(`http://127.0.0.1:${p.port}/b?${others++}`);
      expect((await r.text()).length).toBe(SIZE);
    }
    await within(done, 20_000, "all the answers");
    const answers = Buffer.concat(parts).toString("latin1").split("HTTP/1.1 200 OK").slice(1);
    expect(answers.length).toBe(N);
    for (let i = 0; i < N; i++) {
      const body = answers[i]!.slice(answers[i]!.indexOf("\r\n\r\n") + 4);
      expect(body).toBe(letter(`/a?${i}`).repeat(SIZE));
    }
    expect(others).toBeGreaterThan(10);
    await p.idle();
    await p.stopPromptly();
  });

  test("requests pipelined behind one whose body was not read are not served; the connection closes", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write(`POST /deny HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 10\r\n\r\nabc`);
    const r = await c.readResponse();
    expect(r !== "closed" && r.status).toBe(401);
    // The rest of the body, then what looks like a request: it is body bytes, never a request.
    c.write(`defghijGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(await c.waitClosed(3000)).toBe(true);
    await p.idle();
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });
});

ownListener("the request head", () => {
  test("a head trickling in a byte at a time is answered 408 within client_idle_timeout (plus the sweep's second)", async () => {
    const be = await backend();
    const p = await proxy(be, { limits: "  client_idle_timeout: 1s" });
    const c = await p.client();
    const started = performance.now();
    const text = "GET /trickle HTTP/1.1\r\nHost: x\r\nX-Long: " + "y".repeat(1000);
    let i = 0;
    // Pacing, not synchronisation: each byte keeps the connection's idle timer from firing.
    const pace = setInterval(() => c.write(text[i++ % text.length]!), 100);
    cleanups.push(() => clearInterval(pace));
    const r = await c.readResponse({ timeoutMs: 4000 });
    clearInterval(pace);
    expect(r !== "closed" && r.status).toBe(408);
    expect(performance.now() - started).toBeLessThan(2600);
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });

  test("client_idle_timeout: 0 turns the head timeout off too (it was 1 s)", async () => {
    const be = await backend();
    const p = await proxy(be, { limits: "  client_idle_timeout: 0s" });
    const c = await p.client();
    const started = performance.now();
    const text = "GET /patient HTTP/1.1\r\nHost: x\r\nX-Pad: 0123456789012345\r\n\r\n";
    let i = 0;
    // Pacing, not synchronisation: the head takes about 2.5 s to arrive.
    const pace = setInterval(() => i < text.length && c.write(text[i++]!), 2500 / text.length);
    cleanups.push(() => clearInterval(pace));
    const r = await c.readResponse({ timeoutMs: 6000 });
    clearInterval(pace);
    expect(r !== "closed" && r.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThan(2000);
    await p.stopPromptly();
  });

  test("empty lines before a request are bounded like a head (no unbounded buffering)", async () => {
    const be = await backend();
    const p = await proxy(be, { limits: "  client_idle_timeout: 10s" });
    const c = await p.client();
    const crlf = Buffer.from("\r\n".repeat(8192));
    for (let i = 0; i < 16; i++) c.write(crlf); // 256 KiB of empty lines
    const r = await c.readResponse({ timeoutMs: 3000 });
    expect([400, 431, "closed"]).toContain(r === "closed" ? r : r.status);
    expect(await c.waitClosed(3000)).toBe(true);
    await p.stopPromptly();
  });
});
