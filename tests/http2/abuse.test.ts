// HTTP/2 abuse against a real Fulcrum (its own process for the floods; in this process for the
// smaller cases): each attack is bounded per connection and answered with GOAWAY (ENHANCE_YOUR_CALM),
// Fulcrum stays up, and other clients keep being answered within 100 ms at the 99th percentile.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestBackend } from "../helpers/backends.ts";
import { rssOf, spawnFulcrum, type Child } from "../helpers/fulcrum.ts";
import { testScope } from "../helpers/scope.ts";
import { nghttp2Tools, run } from "../helpers/h2.ts";
import { until } from "../helpers/websocket.ts";
import {
  CONTINUATION,
  DATA,
  END_HEADERS,
  END_STREAM,
  frame,
  get,
  HEADERS,
  PING,
  rawH2,
  type RawH2,
  requestBlock,
  rst,
  settings,
} from "../helpers/h2frames.ts";

const ENHANCE_YOUR_CALM = 11;
const scope = testScope();

let backend: ReturnType<typeof Bun.spawn>;
let backendRequests = 0;
let fulcrum: Child;
let dir = "";
let port = 0;

/**
 * The backend in a process of its own: the attackers run in this one, and victims must not wait
 * on this event loop. It prints its port, then the requests it served, once a second.
 */
async function startBackendProcess(): Promise<string> {
  const code = `let n = 0; const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (n++, new Response("ok\\n")) });
console.log(s.port); setInterval(() => console.log("n", n), 200);`;
  backend = Bun.spawn([process.execPath, "-e", code], { stdout: "pipe", stderr: "inherit" });
  const reader = (backend.stdout as ReadableStream<Uint8Array>).getReader();
  let text = "";
  while (!text.includes("\n")) text += new TextDecoder().decode((await reader.read()).value);
  const port = Number(text.split("\n")[0]);
  void (async () => {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      const m = /n (\d+)\n?$/.exec(new TextDecoder().decode(r.value).trim());
      if (m) backendRequests = Number(m[1]);
    }
  })();
  return `http://127.0.0.1:${port}`;
}

beforeAll(async () => {
  const backendUrl = await startBackendProcess();
  dir = mkdtempSync(join(tmpdir(), "fulcrum-h2abuse-"));
  const file = join(dir, "fulcrum.yaml");
  writeFileSync(
    file,
    `listen: { address: 127.0.0.1:0, h2c: true }\nworkers: 1\npools:\n  web:\n    backends: ["${backendUrl}"]\nlog: { access_log: false }\n`,
  );
  fulcrum = await spawnFulcrum(["run", "--config", file]);
  port = Number(new URL(fulcrum.url).port);
});

afterAll(async () => {
  fulcrum?.kill("SIGKILL");
  await fulcrum?.exited;
  backend?.kill("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Other clients while an attack runs: h2load over HTTP/2 (4 connections, 100 requests/s each) for
 * `seconds`, one line per request in its log; returns the 99th percentile in ms and the failures.
 */
async function victims(seconds: number): Promise<{ p99: number; requests: number; failed: number }> {
  const log = join(dir, `victims-${Date.now()}.log`);
  const r = await run([
    "h2load",
    "-c",
    "4",
    "-m",
    "1",
    "--rps",
    "100",
    "-D",
    String(seconds),
    `--log-file=${log}`,
    `${fulcrum.url}/victim`,
  ]);
  const rows = readFileSync(log, "utf8").trim().split("\n").map((l) => l.split("\t"));
  const times = rows.map((c) => Number(c[2]) / 1000).sort((a, b) => a - b);
  const failed = rows.filter((c) => c[1] !== "200").length + Number(/(\d+) failed/.exec(r.stdout)?.[1] ?? 0);
  return { p99: times[Math.floor(times.length * 0.99)] ?? Infinity, requests: rows.length, failed };
}

/** Run attacker connections `parallel` at a time until `done()`; each sends its attack, then waits for the server to close it. */
async function attack(parallel: number, done: () => boolean, one: (c: RawH2) => Promise<void>) {
  const results: { goaway: number | undefined; closed: boolean }[] = [];
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (!done()) {
        const c = await rawH2(port);
        await one(c);
        // The server closes it: GOAWAY first, then the socket; the attacker leaves once GOAWAY came.
        const deadline = Date.now() + 3000;
        while (!c.closed && c.goaway() === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        results.push({ goaway: c.goaway(), closed: c.closed || c.goaway() !== undefined });
        c.destroy();
      }
    }),
  );
  return results;
}

const tools = nghttp2Tools();

describe.skipIf(!tools)("HTTP/2 abuse is bounded per connection", () => {
  test("rapid reset: 100,000 streams opened and reset; each connection gets GOAWAY; others answered within 100 ms p99", async () => {
    const rssBefore = rssOf(fulcrum.proc.pid);
    const hitsBefore = backendRequests;
    let streams = 0;
    const victim = victims(4);
    // Two attacking connections at a time: 100,000 streams within the victims' 4 s, without the
    // attacker (in this process) taking more of the 2 cores than it needs.
    const results = await attack(2, () => streams >= 100_000, async (c) => {
      // A burst of HEADERS and RST_STREAM pairs, as many as fit before the server stops reading.
      for (let batch = 0; batch < 20 && !c.closed && c.goaway() === undefined; batch++) {
        const parts: Buffer[] = [];
        for (let i = 0; i < 50; i++) {
          const id = 2 * (batch * 50 + i) + 1;
          parts.push(get(id), rst(id));
        }
        streams += 50;
        if (!(await c.write(Buffer.concat(parts)))) break;
      }
    });
    const v = await victim;
    console.info(
      `rapid reset: ${streams} streams on ${results.length} connections, ${
        results.filter((r) => r.goaway === ENHANCE_YOUR_CALM).length
      } GOAWAY; ` +
        `victims ${v.requests} requests, p99 ${v.p99.toFixed(1)} ms; backend saw ${backendRequests - hitsBefore}`,
    );
    expect(streams).toBeGreaterThanOrEqual(100_000);
    expect(results.every((r) => r.closed)).toBe(true);
    expect(results.filter((r) => r.goaway === ENHANCE_YOUR_CALM).length).toBeGreaterThan(results.length * 0.9);
    expect(v.failed).toBe(0);
    expect(v.requests).toBeGreaterThan(1000);
    expect(v.p99).toBeLessThan(100);
    expect(fulcrum.proc.exitCode).toBeNull();
    expect(rssOf(fulcrum.proc.pid) - rssBefore).toBeLessThan(64 * 1024 * 1024);
  }, 60_000);

  test("CONTINUATION flood: header blocks that never end get GOAWAY; others answered within 100 ms p99", async () => {
    const value = "v".repeat(4000);
    // Valid literal fields (so the session keeps decoding), ~16 KB a frame, never END_HEADERS.
    const fields = Buffer.concat(Array.from({ length: 4 }, (_, i) => requestBlock("/", [[`x-${i}`, value]]).subarray(0)));
    let connections = 0;
    const victim = victims(3);
    const started = Date.now();
    const results = await attack(4, () => Date.now() - started > 2500, async (c) => {
      connections++;
      await c.write(frame(HEADERS, 0, 1, requestBlock("/")));
      for (let i = 0; i < 1000 && !c.closed && c.goaway() === undefined; i++) {
        if (!(await c.write(frame(CONTINUATION, 0, 1, fields)))) break;
      }
    });
    const v = await victim;
    console.info(
      `CONTINUATION flood: ${connections} connections, ${results.filter((r) => r.goaway === ENHANCE_YOUR_CALM).length} GOAWAY; p99 ${
        v.p99.toFixed(1)
      } ms`,
    );
    expect(results.every((r) => r.closed)).toBe(true);
    expect(results.filter((r) => r.goaway === ENHANCE_YOUR_CALM).length).toBeGreaterThan(results.length * 0.9);
    expect(v.failed).toBe(0);
    expect(v.p99).toBeLessThan(100);
    expect(fulcrum.proc.exitCode).toBeNull();
  }, 60_000);

  test("a client that ignores GOAWAY and keeps sending is cut within a second or two", async () => {
    const c = await rawH2(port);
    const t0 = Date.now();
    let id = 1;
    while (!c.closed && Date.now() - t0 < 5000) {
      const parts: Buffer[] = [];
      for (let i = 0; i < 50; i++, id += 2) parts.push(get(id), rst(id));
      await c.write(Buffer.concat(parts));
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(c.closed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(3000);
  }, 10_000);
});

describe("HTTP/2 abuse, each bound (in process)", () => {
  const config = (b: TestBackend, extra = "") => `
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
${extra}`;

  async function floods(bytes: Buffer, times: number, extra = "") {
    const b = scope.backend("b");
    const f = await scope.fulcrum(config(b, extra));
    const c = await rawH2(Number(new URL(f.url).port));
    scope.cleanups.push(() => c.destroy());
    for (let i = 0; i < times && !c.closed && c.goaway() === undefined; i++) await c.write(bytes);
    await until(() => c.goaway() !== undefined || c.closed, 5000, "GOAWAY");
    return { c, f };
  }

  test("a PING flood gets GOAWAY (ENHANCE_YOUR_CALM) and a warning in the log", async () => {
    const { c, f } = await floods(Buffer.concat(Array.from({ length: 100 }, () => frame(PING, 0, 0, Buffer.alloc(8)))), 100);
    expect(c.goaway()).toBe(ENHANCE_YOUR_CALM);
    await until(() => f.records.some((r) => String(r.properties.reason ?? "").includes("PING")));
  });

  test("a SETTINGS flood gets GOAWAY", async () => {
    const { c } = await floods(Buffer.concat(Array.from({ length: 100 }, () => settings([[4, 65535]]))), 100);
    expect(c.goaway()).toBe(ENHANCE_YOUR_CALM);
  });

  test("empty DATA frames get GOAWAY", async () => {
    const { c } = await floods(
      Buffer.concat([frame(HEADERS, END_HEADERS, 1, requestBlock("/")), ...Array.from({ length: 200 }, () => frame(DATA, 0, 1))]),
      1,
    );
    expect(c.goaway()).toBe(ENHANCE_YOUR_CALM);
  });

  test("empty CONTINUATION frames get GOAWAY", async () => {
    const { c } = await floods(
      Buffer.concat([frame(HEADERS, 0, 1, requestBlock("/")), ...Array.from({ length: 100 }, () => frame(CONTINUATION, 0, 1))]),
      1,
    );
    expect(c.goaway()).toBe(ENHANCE_YOUR_CALM);
  });

  test("a window that never opens: answers waiting on it are cut, the connection closed, the backends released", async () => {
    const b = scope.backend("big", () => new Response(new Uint8Array(4 << 20)));
    const f = await scope.fulcrum(config(b, "limits: { client_idle_timeout: 1s }"));
    // SETTINGS_INITIAL_WINDOW_SIZE 0: nothing may be sent on any stream until a WINDOW_UPDATE, which never comes.
    const c = await rawH2(Number(new URL(f.url).port), { settings: [[4, 0]] });
    scope.cleanups.push(() => c.destroy());
    await c.write(Buffer.concat(Array.from({ length: 20 }, (_, i) => get(2 * i + 1, "/big"))));
    await until(() => b.requests.length === 20);
    const t0 = Date.now();
    await until(() => c.goaway() !== undefined || c.closed, 5000, "GOAWAY");
    expect(c.goaway()).toBe(ENHANCE_YOUR_CALM);
    expect(Date.now() - t0).toBeLessThan(2500);
    await until(() => f.server.gateway.inflight() === 0, 5000, "the streams to be cancelled");
    expect(f.server.gateway.pools.get("web")!.backends[0]!.inflight).toBe(0);
  });

  test("a header block over max_header_list_size is refused; the backend never sees it; the connection still serves", async () => {
    const b = scope.backend("b");
    const f = await scope.fulcrum(config(b));
    const c = await rawH2(Number(new URL(f.url).port));
    scope.cleanups.push(() => c.destroy());
    const big = requestBlock("/big", [["x-big", "v".repeat(100 * 1024)]]);
    // In frames the server allows (16 KiB), as HEADERS and CONTINUATION.
    const parts = [frame(HEADERS, END_STREAM, 1, big.subarray(0, 16384))];
    for (let at = 16384; at < big.length; at += 16384) {
      parts.push(frame(CONTINUATION, at + 16384 >= big.length ? END_HEADERS : 0, 1, big.subarray(at, at + 16384)));
    }
    await c.write(Buffer.concat(parts));
    await until(() => c.frames.some((x) => x.stream === 1 || x.type === 7), 5000, "an answer to stream 1");
    expect(b.requests).toHaveLength(0);
    if (!c.closed && c.goaway() === undefined) {
      await c.write(get(3, "/after"));
      await until(() => c.frames.some((x) => x.stream === 3 && x.type === DATA), 5000, "stream 3 answered");
      expect(b.requests.map((r) => r.path)).toEqual(["/after"]);
    }
  });

  test.skipIf(!tools)("ordinary traffic never trips a bound: 2,000 requests on one connection, 50 at a time", async () => {
    const b = scope.backend("b");
    const f = await scope.fulcrum(config(b));
    const r = await run(["h2load", "-n", "2000", "-c", "1", "-m", "50", `${f.url}/`]);
    expect(/2000 succeeded/.test(r.stdout)).toBe(true);
    expect(f.records.some((x) => String(x.message).includes("abusive"))).toBe(false);
  });
});
