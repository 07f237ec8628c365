import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { spawnListening, type Child } from "../helpers/fulcrum.ts";
import { RawClient } from "../helpers/raw-client.ts";
import { startWsBackend, until, wsConnect, type WsBackend } from "../helpers/websocket.ts";

// Fulcrum under Deno (`deno task start`) on its own listener and upstream client over Deno's TCP
// (core/runtime/deno-tcp.ts): bytes of many connections at once, the idle timer, backpressure
// both ways and WebSocket tunnels.
const ROOT = new URL("../../", import.meta.url).pathname;
const file = join(ROOT, ".tmp", `deno-tcp-${process.pid}.yaml`);
const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed + (i >> 10)) & 255);

let fulcrum: Child;
let port = 0;
let echo: TestBackend;
let ws: WsBackend;
/** Bytes the streaming backend has produced for /big (its stream is pulled as the proxy reads). */
let pulled = 0;
const BIG = 128 * 1024 * 1024;

beforeAll(async () => {
  echo = startBackend("echo", async (req) => {
    const u = new URL(req.url);
    if (u.pathname === "/big") {
      pulled = 0;
      const piece = new Uint8Array(64 * 1024).fill(120);
      return new Response(
        new ReadableStream({
          pull(c) {
            if (pulled >= BIG) return c.close();
            c.enqueue(piece);
            pulled += piece.length;
          },
        }, { highWaterMark: 0 }),
      );
    }
    const size = Number(u.searchParams.get("size") ?? -1);
    const seed = Number(u.searchParams.get("seed") ?? 0);
    return new Response(size >= 0 ? pattern(size, seed) : await req.arrayBuffer());
  });
  ws = await startWsBackend();
  mkdirSync(join(ROOT, ".tmp"), { recursive: true });
  writeFileSync(
    file,
    `listen: 127.0.0.1:0\nworkers: 1\nadmin: false\nlog: { access_log: false }\nlimits: { client_idle_timeout: 1s }\n` +
      `pools:\n  e: { backends: ["${echo.url}"] }\n  ws: { backends: ["${ws.url}"] }\n` +
      `routes:\n  - { match: { path: /ws }, pool: ws }\n  - { match: { path: / }, pool: e }\n`,
  );
  fulcrum = await spawnListening([join(ROOT, "node_modules", ".bin", "deno"), "task", "start", "run", "--config", file], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` } as Record<string, string>,
  }, 30_000);
  port = Number(new URL(fulcrum.url).port);
}, 40_000);

afterAll(async () => {
  if (fulcrum) {
    fulcrum.kill("SIGTERM");
    expect(await fulcrum.exited).toBe(0);
  }
  rmSync(file, { force: true });
  await echo?.stop();
  await ws?.stop();
});

describe("Fulcrum under Deno, on Deno's TCP", () => {
  test("64 connections at once, each with bodies of its own both ways (writes of many connections share buffers)", async () => {
    // Sizes around the adapter's thresholds: small copies share a slab, 4 KiB+ get their own buffer.
    const sizes = [0, 1, 100, 4095, 4096, 4097, 20_000, 70_000];
    await Promise.all(Array.from({ length: 64 }, async (_, c) => {
      for (let k = 0; k < 3; k++) {
        const size = sizes[(c + k) % sizes.length]!;
        const down = await fetch(`${fulcrum.url}/down?size=${size}&seed=${c * 3 + k}`);
        expect(Buffer.from(await down.arrayBuffer()).equals(Buffer.from(pattern(size, c * 3 + k)))).toBe(true);
        const body = pattern(size + 13, c + 100 * k);
        const up = await fetch(`${fulcrum.url}/up`, { method: "POST", body });
        expect(Buffer.from(await up.arrayBuffer()).equals(Buffer.from(body))).toBe(true);
      }
    }));
  }, 30_000);

  test("client_idle_timeout: a connection used every 0.5 s stays open; left idle, it is closed after 1-2 s", async () => {
    const c = await RawClient.connect(port);
    try {
      // The listener sets the idle timer after every answer; the sleeps are the idle time under test.
      for (let i = 0; i < 6; i++) {
        c.write(`GET /down?size=5&seed=${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
        const r = await c.readResponse();
        expect(r !== "closed" && r.status).toBe(200);
        await Bun.sleep(500);
      }
      const idleSince = performance.now();
      expect(await c.waitClosed(5_000)).toBe(true);
      const idle = performance.now() - idleSince;
      expect(idle).toBeGreaterThan(400); // 0.5 s of idle time already passed in the loop above
      expect(idle).toBeLessThan(2_500);
    } finally {
      c.destroy();
    }
  }, 15_000);

  test("a client that does not read holds the backend back; when it reads, every byte arrives", async () => {
    const s = connect({ host: "127.0.0.1", port });
    await new Promise<void>((r) => s.once("connect", () => r()));
    s.pause();
    s.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    // The proxy's socket buffers fill, then it stops reading the backend: `pulled` stops growing.
    let last = -1;
    let stableSince = performance.now();
    await until(
      () => {
        if (pulled !== last) (last = pulled), (stableSince = performance.now());
        return pulled > 0 && performance.now() - stableSince > 500;
      },
      20_000,
      "the backend held back",
    );
    expect(pulled).toBeLessThan(BIG / 2);
    // The backend streams it (chunked): the answer ends with the last chunk.
    let received = 0;
    let tail = "";
    const done = new Promise<void>((r) =>
      s.on("data", (d: Buffer) => {
        received += d.length;
        tail = (tail + d.subarray(-5).toString("latin1")).slice(-5);
        if (tail === "0\r\n\r\n") r();
      })
    );
    s.resume();
    await done;
    expect(pulled).toBe(BIG);
    expect(received).toBeGreaterThan(BIG);
    s.destroy();
  }, 40_000);

  test("a WebSocket tunnel carries 8 MiB each way and 300 small messages in order", async () => {
    const t = wsConnect(`${fulcrum.url}/ws`);
    await t.opened;
    const big = Buffer.from(pattern(8 * 1024 * 1024, 5));
    t.ws.send(big);
    expect((await t.message(0, 20_000)).data.equals(big)).toBe(true);
    for (let i = 0; i < 300; i++) t.ws.send(`m${i}`);
    await t.message(300, 10_000);
    expect(t.messages.slice(1).map((m) => String(m.data))).toEqual(Array.from({ length: 300 }, (_, i) => `m${i}`));
    t.ws.close();
    await t.closed;
  }, 30_000);
});
