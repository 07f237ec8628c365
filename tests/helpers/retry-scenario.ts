/**
 * Retry-budget scenarios over real loopback sockets, with Fulcrum as a child process (`bun main.ts
 * run`, default `workers`): issue 18 item 4's partial outage (one backend killed, then another's
 * application slow while its health endpoint stays fast, then both recover), and the pieces a
 * retry storm test needs. Used by tests/resilience/retry-budget.test.ts and bench/retry-budget.ts.
 * Every wait is bounded; every process started is stopped by its pid.
 */
import type { Server } from "bun";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnListening, type Child } from "./fulcrum.ts";
import { RawClient } from "./raw-client.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

export interface FulcrumChild {
  readonly child: Child;
  readonly port: number;
  /** Worker processes serving (1 without workers). */
  readonly workers: number;
  /** Access-log records so far. */
  access(): AccessRecord[];
  /** Wait (bounded) until `count` access records are in. */
  waitAccess(count: number, timeoutMs?: number): Promise<AccessRecord[]>;
  stop(): Promise<void>;
}

export interface AccessRecord {
  "@timestamp": string;
  duration_ms: number;
  status: number;
  attempts: number;
  error?: string;
  worker?: number;
}

/** Start `bun main.ts run` of `root` (default: this checkout) with `yaml` (listen and admin are set here). */
export async function startFulcrumChild(yaml: string, root = ROOT): Promise<FulcrumChild> {
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-retry-budget-"));
  const file = join(dir, "fulcrum.yaml");
  writeFileSync(file, `listen: 127.0.0.1:0\nadmin: false\n${yaml}`);
  let child: Child;
  try {
    child = await spawnListening([process.execPath, "main.ts", "run", "--config", file], { cwd: root }, 20_000);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const listening = JSON.parse(child.lines.find((l) => l.includes('"message":"listening"'))!) as { workers?: number; url: string };
  const access = () => child.lines.filter((l) => l.includes('"message":"access"')).map((l) => JSON.parse(l) as AccessRecord);
  return {
    child,
    port: Number(new URL(listening.url).port),
    workers: listening.workers ?? 1,
    access,
    async waitAccess(count, timeoutMs = 5_000) {
      for (const until = performance.now() + timeoutMs; performance.now() < until;) {
        const records = access();
        if (records.length >= count) return records;
        await Bun.sleep(20); // polling the child's output, bounded above
      }
      return access();
    },
    async stop() {
      child.kill("SIGTERM");
      let timer: Timer | undefined;
      const exited = await Promise.race([
        child.exited.then(() => true),
        new Promise<boolean>((r) => (timer = setTimeout(r, 10_000, false))),
      ]);
      clearTimeout(timer);
      if (!exited) child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface LoadOptions {
  port: number;
  requests: number;
  /** Connections, each with one request in flight at a time (like wrk's). */
  concurrency: number;
  /** Requests per second (request n is due at n / rate s); 0: each connection as fast as it can. */
  rate: number;
  /** Stop sending after this long. */
  timeoutMs: number;
}

/**
 * GETs over `concurrency` keep-alive connections of their own (so the kernel spreads them over
 * the workers as it would any clients'), each sending its next request once it has the answer to
 * the last. Returns the count of each status (-1: no response).
 */
export async function sendLoad(o: LoadOptions): Promise<{ statuses: Record<number, number>; sent: number; elapsedMs: number }> {
  const statuses: Record<number, number> = {};
  const started = performance.now();
  const deadline = started + o.timeoutMs;
  let next = 0;
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      let conn: RawClient | undefined;
      try {
        while (next < o.requests && performance.now() < deadline) {
          const n = next++;
          // Pacing: request n is due at n / rate seconds; a connection running behind sends at once.
          const wait = o.rate > 0 ? started + (n * 1000) / o.rate - performance.now() : 0;
          if (wait > 1) await Bun.sleep(wait);
          let status = -1;
          try {
            conn ??= await RawClient.connect(o.port);
            conn.write(`GET /item/${n} HTTP/1.1\r\nhost: load\r\n\r\n`);
            const r = await conn.readResponse({ timeoutMs: 10_000 });
            if (r === "closed") throw new Error("closed before answering");
            status = r.status;
            if (r.get("connection") === "close") {
              conn.destroy();
              conn = undefined;
            }
          } catch {
            conn?.destroy();
            conn = undefined;
          }
          statuses[status] = (statuses[status] ?? 0) + 1;
        }
      } finally {
        conn?.destroy();
      }
    }),
  );
  return { statuses, sent: next, elapsedMs: performance.now() - started };
}

export interface PerWorker {
  requests: number;
  /** Attempts beyond the first. */
  retries: number;
  /** Requests whose retry the budget refused. */
  refused: number;
  /**
   * The most retries beyond 20% of requests in any 10 s window: what the reserve had to cover.
   * From the access log's times (a request counts at its start, its retries at its end), so
   * approximate.
   */
  beyondRatio: number;
}

/** Per worker (0 without workers): requests, retries, refusals and the reserve used. */
export function perWorker(records: AccessRecord[]): Record<number, PerWorker> {
  const out: Record<number, PerWorker> = {};
  // Per worker: -1 at each request's start, +5 at each retry: 5 × (retries - 20% of requests).
  const marks = new Map<number, { t: number; d: number }[]>();
  for (const r of records) {
    const worker = r.worker ?? 0;
    const w = (out[worker] ??= { requests: 0, retries: 0, refused: 0, beyondRatio: 0 });
    w.requests++;
    w.retries += Math.max(0, r.attempts - 1);
    if (r.error?.startsWith("retry budget exhausted")) w.refused++;
    const end = Date.parse(r["@timestamp"]);
    let m = marks.get(worker);
    if (!m) marks.set(worker, m = []);
    m.push({ t: end - r.duration_ms, d: -1 });
    for (let i = 1; i < r.attempts; i++) m.push({ t: end, d: 5 });
  }
  for (const [worker, m] of marks) {
    m.sort((a, b) => a.t - b.t);
    let sum = 0;
    let peak = 0;
    for (let i = 0, j = 0; i < m.length; i++) {
      sum += m[i]!.d;
      while (m[j]!.t <= m[i]!.t - 10_000) sum -= m[j++]!.d;
      peak = Math.max(peak, sum);
    }
    out[worker]!.beyondRatio = Math.round(peak / 5);
  }
  return out;
}

export interface ScenarioOptions {
  /** GETs in all (the issue: 6,000). */
  requests: number;
  /** Connections (the issue: concurrency 50). */
  concurrency: number;
  /** Requests per second; 0: as fast as the connections go. */
  rate: number;
  /** Milliseconds from the start at which b1 is killed, b2's application turns slow, and both recover. */
  killAt: number;
  slowAt: number;
  recoverAt: number;
  /** How long the slow application takes (the issue: 2 s; `timeouts.response` is 1 s). */
  slowMs?: number;
  /** The checkout whose `main.ts` runs (default: this one). */
  root?: string;
  /** Give up on sending after this long. */
  timeoutMs?: number;
}

export interface ScenarioResult {
  statuses: Record<number, number>;
  /** Access-log records of non-2xx answers. */
  failures: AccessRecord[];
  perWorker: Record<number, PerWorker>;
  elapsedMs: number;
  /** When each event happened, ms from the start. */
  events: Record<string, number>;
  workers: number;
}

interface Chaotic {
  port: number;
  slow: boolean;
  server: Server<undefined> | undefined;
}

/**
 * Issue 18 item 4: three backends, `retry.attempts: 3`, `timeouts.response: 1s`, health checks
 * every 200 ms, default workers and budget. b1 is killed at `killAt`; b2's application takes
 * `slowMs` from `slowAt` on while its /healthz stays fast (so it stays in the pool and every
 * request sent there times out); at `recoverAt` b2 is fast again and b1 is back.
 */
export async function runRetryScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const slowMs = o.slowMs ?? 2_000;
  const serveOn = (b: Chaotic, name: string) => {
    b.server = Bun.serve({
      hostname: "127.0.0.1",
      port: b.port,
      idleTimeout: 0,
      async fetch(req) {
        // The fault being injected (the application is slow, its health endpoint is not).
        if (b.slow && !req.url.endsWith("/healthz")) await Bun.sleep(slowMs);
        return new Response(name, { headers: { "x-backend": name } });
      },
    });
    b.port = b.server.port!;
  };
  const backends: Chaotic[] = [0, 1, 2].map(() => ({ port: 0, slow: false, server: undefined }));
  backends.forEach((b, i) => serveOn(b, `b${i + 1}`));
  let fulcrum: FulcrumChild | undefined;
  const timers: Timer[] = [];
  try {
    fulcrum = await startFulcrumChild(
      `pools:
  web:
    backends: [${backends.map((b) => `"http://127.0.0.1:${b.port}"`).join(", ")}]
    health: { path: /healthz, interval: 200ms }
    retry: { attempts: 3 }
    timeouts: { response: 1s }
`,
      o.root,
    );
    const [killed, slowed] = [backends[0]!, backends[1]!];
    const events: Record<string, number> = {};
    const started = performance.now();
    const at = () => Math.round(performance.now() - started);
    // The faults, injected on a schedule.
    timers.push(
      setTimeout(() => {
        events.kill = at();
        void killed.server!.stop(true);
        killed.server = undefined;
      }, o.killAt),
      setTimeout(() => {
        events.slow = at();
        slowed.slow = true;
      }, o.slowAt),
      setTimeout(() => {
        events.recover = at();
        slowed.slow = false;
        serveOn(killed, "b1");
      }, o.recoverAt),
    );
    const load = await sendLoad({
      port: fulcrum.port,
      requests: o.requests,
      concurrency: o.concurrency,
      rate: o.rate,
      timeoutMs: o.timeoutMs ?? 120_000,
    });
    const records = await fulcrum.waitAccess(load.sent);
    return {
      statuses: load.statuses,
      failures: records.filter((r) => r.status < 200 || r.status > 299),
      perWorker: perWorker(records),
      elapsedMs: load.elapsedMs,
      events,
      workers: fulcrum.workers,
    };
  } finally {
    for (const t of timers) clearTimeout(t);
    await fulcrum?.stop();
    for (const b of backends) await b.server?.stop(true);
  }
}
