// Built-in HTTP/1.1 keep-alive load generator on raw TCP (Bun.connect), used when neither wrk
// nor autocannon is installed, and by `npm run load-test` for live progress. Raw sockets rather
// than fetch because fetch pools at most 64 idle connections per process (DESIGN.md §6), which
// would make "256 connections" a lie. One process, one core: it reports what it can drive.
import type { Socket } from "bun";

const args = process.argv.slice(2);
const arg = (k: string, d: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1]! : d;
};
const url = new URL(arg("--url", "http://127.0.0.1:18080/100b"));
const connections = Number(arg("--connections", "64"));
const durationSec = Number(arg("--duration", "10"));
const maxRequests = Number(arg("--requests", "0")) || Infinity;
const method = arg("--method", "GET").toUpperCase();
const bodySize = Number(arg("--body-size", "0"));
const asJson = args.includes("--json");
const progress = args.includes("--progress");

const reqBody = "x".repeat(bodySize);
const request = Buffer.from(
  `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUser-Agent: fulcrum-bench\r\n` +
    (bodySize || method === "POST" ? `Content-Type: application/octet-stream\r\nContent-Length: ${bodySize}\r\n` : "") +
    `\r\n${reqBody}`,
);

const latencies: number[] = [];
const statuses = new Map<number, number>();
const backends = new Map<string, number>();
let issued = 0, completed = 0, errors = 0, bytes = 0, connects = 0;
const started = performance.now();
const deadline = started + durationSec * 1000;
let stopping = false;
let lastDone = started;

interface Conn {
  buf: Buffer;
  t0: number;
  state: "head" | "body" | "chunk" | "idle";
  remaining: number;
  status: number;
}

function next(s: Socket<Conn>): void {
  if (stopping || performance.now() >= deadline || issued >= maxRequests) {
    s.end();
    return;
  }
  issued++;
  s.data.t0 = performance.now();
  s.data.state = "head";
  s.write(request);
}

function done(s: Socket<Conn>): void {
  const c = s.data;
  latencies.push(performance.now() - c.t0);
  completed++;
  statuses.set(c.status, (statuses.get(c.status) ?? 0) + 1);
  if (c.status >= 400) errors++;
  c.state = "idle";
  lastDone = performance.now();
  if (completed >= maxRequests || (lastDone >= deadline && completed + errors >= issued)) {
    finish();
    return;
  }
  next(s);
}

/** Consume as much of c.buf as possible; returns false on a framing error. */
function parse(s: Socket<Conn>): boolean {
  const c = s.data;
  for (;;) {
    if (c.state === "head") {
      const end = c.buf.indexOf("\r\n\r\n");
      if (end < 0) return true;
      const head = c.buf.toString("latin1", 0, end);
      c.buf = c.buf.subarray(end + 4);
      c.status = Number(head.slice(9, 12));
      const lower = head.toLowerCase();
      const be = /\r\nx-backend:\s*([^\r]*)/.exec(lower);
      if (be) backends.set(be[1]!, (backends.get(be[1]!) ?? 0) + 1);
      const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
      if (/\r\ntransfer-encoding:[^\r]*chunked/.test(lower)) {
        c.state = "chunk";
        c.remaining = -1;
      } else if (cl) {
        c.state = "body";
        c.remaining = Number(cl[1]);
      } else if (c.status === 204 || c.status === 304 || method === "HEAD") {
        c.state = "body";
        c.remaining = 0;
      } else return false; // read-until-close bodies are not used by any proxy under test
    }
    if (c.state === "body") {
      const n = Math.min(c.remaining, c.buf.length);
      c.remaining -= n;
      bytes += n;
      c.buf = c.buf.subarray(n);
      if (c.remaining > 0) return true;
      done(s);
      if ((c.state as string) !== "head") return true; // done() may have issued the next request
      continue;
    }
    if (c.state === "chunk") {
      if (c.remaining > 0) { // inside chunk data (+2 for its CRLF)
        const n = Math.min(c.remaining, c.buf.length);
        c.remaining -= n;
        bytes += n;
        c.buf = c.buf.subarray(n);
        if (c.remaining > 0) return true;
        c.remaining = -1;
      }
      const eol = c.buf.indexOf("\r\n");
      if (eol < 0) return true;
      const size = parseInt(c.buf.toString("latin1", 0, eol), 16);
      if (Number.isNaN(size)) return false;
      if (size === 0) { // last chunk; no trailers expected
        if (c.buf.length < eol + 4) return true;
        c.buf = c.buf.subarray(eol + 4);
        done(s);
        if ((c.state as string) !== "head") return true; // done() may have issued the next request
        continue;
      }
      c.buf = c.buf.subarray(eol + 2);
      c.remaining = size + 2;
      continue;
    }
    return true;
  }
}

function open(): void {
  if (stopping || performance.now() >= deadline || issued >= maxRequests) return;
  connects++;
  Bun.connect<Conn>({
    hostname: url.hostname,
    port: Number(url.port || 80),
    data: { buf: Buffer.alloc(0), t0: 0, state: "idle", remaining: 0, status: 0 },
    socket: {
      open(s) {
        next(s);
      },
      data(s, chunk) {
        s.data.buf = s.data.buf.length ? Buffer.concat([s.data.buf, chunk]) : chunk;
        if (!parse(s)) {
          errors++;
          s.data.state = "idle";
          s.end();
        }
      },
      close(s) {
        if (s.data.state !== "idle") errors++;
        setTimeout(open, 0);
      },
      connectError() {
        errors++;
        setTimeout(open, 10);
      },
    },
  }).catch(() => {
    errors++;
    setTimeout(open, 10);
  });
}

function pctl(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

for (let i = 0; i < connections; i++) open();
let last = 0, lastT = started;
const tick = setInterval(() => {
  const now = performance.now();
  if (progress) {
    const r = (completed - last) / ((now - lastT) / 1000);
    process.stderr.write(`  t=${((now - started) / 1000).toFixed(0)}s  requests=${completed}  ${Math.round(r)}/s  errors=${errors}\n`);
  }
  last = completed;
  lastT = now;
  if (now >= deadline + 2000 || (now >= deadline && completed + errors >= issued)) finish();
}, 1000);

function finish(): void {
  if (stopping) return;
  stopping = true;
  clearInterval(tick);
  const secs = Math.max(1, Math.min(lastDone, deadline) - started);
  const sorted = latencies.sort((a, b) => a - b);
  const result = {
    tool: "bun",
    requests: completed,
    durationSec: secs / 1000,
    rps: completed / (secs / 1000),
    bytesPerSec: bytes / (secs / 1000),
    p50Ms: pctl(sorted, 50),
    p90Ms: pctl(sorted, 90),
    p99Ms: pctl(sorted, 99),
    maxMs: sorted.at(-1) ?? NaN,
    errors,
    connects,
    detail: `status=${JSON.stringify(Object.fromEntries(statuses))} connects=${connects}`,
    backends: Object.fromEntries(backends),
  };
  process.stdout.write(asJson ? JSON.stringify(result) + "\n" : JSON.stringify(result, null, 2) + "\n");
  process.exit(0);
}
