/**
 * Memory stays bounded with slow peers: Fulcrum in its own process, a 100 MB download to a slow
 * reader and a 100 MB upload to a slow backend, RSS measured.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Buffer } from "node:buffer";
import { rssOf, spawnFulcrum, type Child } from "../helpers/fulcrum.ts";
import { tempDir } from "../helpers/plugins.ts";

setDefaultTimeout(20_000);

describe("memory stays bounded with slow peers (Fulcrum in its own process, RSS measured)", () => {
  const MB = 1024 * 1024;
  const BIG = 100 * MB;
  const PIECE = 64 * 1024;
  let child: Child;
  let server: import("node:net").Server;
  let uploaded = 0;

  /** A backend on node:net: GET /big streams 100 MB, POST reads its body slowly. */
  beforeAll(async () => {
    const { createServer } = await import("node:net");
    const piece = Buffer.alloc(PIECE, 120);
    server = createServer((s) => {
      s.on("error", () => {});
      let pace: ReturnType<typeof setInterval> | undefined;
      s.once("close", () => clearInterval(pace));
      let buf = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          const head = buf.toString("latin1", 0, end);
          buf = buf.subarray(end + 4);
          if (head.startsWith("GET /big")) {
            s.off("data", onData);
            void (async () => {
              s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BIG}\r\n\r\n`);
              for (let sent = 0; sent < BIG && !s.destroyed; sent += PIECE) {
                if (!s.write(piece)) {
                  await new Promise<void>((r) => {
                    const go = () => (s.off("drain", go), s.off("close", go), r());
                    s.on("drain", go).on("close", go);
                  });
                }
              }
              s.on("data", onData);
            })();
            return;
          } else if (head.startsWith("POST")) {
            const length = Number(/content-length: (\d+)/i.exec(head)![1]);
            s.off("data", onData);
            let got = buf.length;
            buf = Buffer.alloc(0);
            // Read slowly: 1 MiB every 10 ms (~100 MB/s), the rest waits in Fulcrum's and the kernel's buffers.
            s.pause();
            pace = setInterval(() => {
              let chunk: Buffer | null;
              let n = 0;
              while (n < MB && (chunk = s.read()) !== null) n += chunk.length;
              got += n;
              if (got >= length) {
                clearInterval(pace);
                uploaded = got;
                s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${String(got).length}\r\n\r\n${got}`);
                s.resume();
                s.on("data", onData);
              }
            }, 10);
            return;
          }
        }
      };
      s.on("data", onData);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const file = dir.write(
      "fulcrum.yaml",
      `listen: 127.0.0.1:0\nworkers: 1\npools:\n  web:\n    backends: ["http://127.0.0.1:${port}"]\n    retry: { attempts: 1 }\nlog: { access_log: false }\nadmin: false\n`,
    );
    child = await spawnFulcrum(["run", "--config", file]);
    // Warm up: JIT, pools.
    for (let i = 0; i < 20; i++) await (await fetch(`${child.url}/`, { method: "POST", body: "x" })).text();
  });

  afterAll(async () => {
    child?.kill("SIGKILL");
    await child?.exited;
    await new Promise((r) => server?.close(r));
  });
  // Made here, after the afterAll above, so that it is removed after the child is stopped (afterAll
  // hooks run in order), and not in beforeAll: one made there is removed when the hook ends.
  const dir = tempDir("fulcrum-listener-rss-");

  /** Peak RSS of the child while `work` runs (sampled every 20 ms). */
  async function peakRss<T>(work: Promise<T>): Promise<{ result: T; growth: number }> {
    const before = rssOf(child.proc.pid);
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, rssOf(child.proc.pid))), 20);
    try {
      const result = await work;
      return { result, growth: Math.max(peak, rssOf(child.proc.pid)) - before };
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Send `request` on a new connection and read the answers slowly: one read from the socket
   * every `tickMs` (Bun reads up to 512 KiB at a time), until `expected(head)` bytes arrived.
   * Resolves with the bytes received.
   */
  async function slowRead(request: string, expected: (head: string) => number, tickMs: number): Promise<number> {
    let total = 0;
    let want = Infinity;
    let head = "";
    let paused = false;
    const done = Promise.withResolvers<number>();
    const s = await Bun.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(child.url).port),
      socket: {
        data(sock, d) {
          if (want === Infinity) {
            head += d.toString("latin1", 0, Math.min(d.length, 200));
            const end = head.indexOf("\r\n\r\n");
            if (end >= 0) want = expected(head.slice(0, end + 4));
          }
          total += d.length;
          if (total >= want) return done.resolve(total);
          sock.pause();
          paused = true;
        },
        close: () => done.reject(new Error(`closed after ${total} bytes`)),
        error: (_s, e) => done.reject(e),
      },
    });
    const pace = setInterval(() => {
      if (paused) {
        paused = false;
        s.resume();
      }
    }, tickMs);
    s.write(request);
    try {
      return await done.promise;
    } finally {
      clearInterval(pace);
      s.terminate();
    }
  }

  test(`a 100 MB download to a slow reader: RSS grows < 64 MB`, async () => {
    const { result, growth } = await peakRss(slowRead("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", (head) => head.length + BIG, 5));
    expect(result).toBeGreaterThanOrEqual(BIG);
    console.info(`RSS growth ${(growth / MB).toFixed(1)} MB`);
    expect(growth).toBeLessThan(64 * MB);
  });

  test(`a 100 MB upload to a backend that reads slowly: RSS grows < 64 MB`, async () => {
    const { connect } = await import("node:net");
    const upload = new Promise<string>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: Number(new URL(child.url).port) });
      let got = "";
      s.on("data", (d) => {
        got += d.toString("latin1");
        if (/\r\n\r\n\d+$/.test(got) && got.endsWith(String(BIG))) {
          s.destroy();
          resolve(got);
        }
      });
      s.on("error", reject);
      s.once("close", () => reject(new Error(`closed: ${got}`)));
      s.write(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG}\r\n\r\n`);
      const piece = Buffer.alloc(MB, 117);
      let sent = 0;
      const pump = () => {
        while (sent < BIG) {
          sent += MB;
          if (!s.write(piece)) return void s.once("drain", pump);
        }
      };
      pump();
    });
    const { result, growth } = await peakRss(upload);
    expect(result).toStartWith("HTTP/1.1 200");
    expect(uploaded).toBe(BIG);
    console.info(`RSS growth ${(growth / MB).toFixed(1)} MB`);
    expect(growth).toBeLessThan(64 * MB);
  });
});
