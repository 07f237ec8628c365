/**
 * A seeded mutation fuzzer for Fulcrum's HTTP/2 layer (core/http2): client sessions built from
 * valid frames (GET, POST with DATA, CONTINUATION, padding, trailers, PRIORITY, WINDOW_UPDATE,
 * PING, RST_STREAM, SETTINGS, GOAWAY, an unknown type), then mutated (bytes flipped, lengths,
 * types, flags and stream ids changed, frames cut, doubled, dropped or swapped, bytes inserted)
 * and sent to an h2c listener. Whatever a case holds, Fulcrum must not throw, must answer no
 * stream with a 500 of its own, must close the connection once the client has finished sending,
 * and must serve clean requests afterwards. The seed is in the test's name; FUZZ_SEED=<seed>
 * replays a run, FUZZ_CASE=<i> one case of it.
 */
import { Buffer } from "node:buffer";
import { connect } from "node:net";
import { expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import {
  ACK,
  CONTINUATION,
  DATA,
  END_HEADERS,
  END_STREAM,
  frame,
  get,
  GOAWAY,
  HEADERS,
  PING,
  PREFACE,
  rawH2,
  requestBlock,
  rst,
  SETTINGS,
  settings,
  WINDOW_UPDATE,
} from "../helpers/h2frames.ts";
import { HpackDecoder } from "../../core/http2/hpack.ts";
import { until } from "../helpers/websocket.ts";

const CASES = 1_000;
const CONCURRENCY = 4;
const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
if (process.env.FUZZ_SEED !== undefined && !/^\d+$/.test(process.env.FUZZ_SEED))
  throw new Error(`FUZZ_SEED must be a number, got ${process.env.FUZZ_SEED}`);
if (process.env.FUZZ_CASE !== undefined && !/^\d+$/.test(process.env.FUZZ_CASE))
  throw new Error(`FUZZ_CASE must be a number, got ${process.env.FUZZ_CASE}`);
const scope = testScope();

/** mulberry32: a small seeded generator, so a case replays from (seed, index). */
function rng(s: number): () => number {
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

/** The frames of one case (after the preface), and what was done to them. */
function makeCase(index: number): { frames: Buffer[]; did: string[] } {
  const r = rng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const frames: Buffer[] = [settings(r() < 0.3 ? [[int(7) + 1, int(2 ** 20)]] : []), frame(SETTINGS, ACK, 0)];
  const did: string[] = [];
  let sid = 1;
  const ops = int(6) + 1;
  for (let i = 0; i < ops; i++) {
    const path = `/f/${index}/${i}`;
    const op = pick([
      "get",
      "post",
      "continuation",
      "trailers",
      "padded",
      "window",
      "ping",
      "rst",
      "priority",
      "settings",
      "goaway",
      "unknown",
    ]);
    did.push(op);
    const post = Buffer.concat([Buffer.from([0x83, 0x86, 0x04, path.length]), Buffer.from(path), Buffer.from([0x01, 1]), Buffer.from("x")]);
    switch (op) {
      case "get":
        frames.push(get(sid, path));
        sid += 2;
        break;
      case "post": {
        const body = Buffer.alloc(int(3000), 97);
        frames.push(frame(HEADERS, END_HEADERS, sid, post));
        const cut = int(body.length + 1);
        if (r() < 0.5) frames.push(frame(DATA, 0, sid, body.subarray(0, cut)), frame(DATA, END_STREAM, sid, body.subarray(cut)));
        else frames.push(frame(DATA, END_STREAM, sid, body));
        sid += 2;
        break;
      }
      case "continuation": {
        const block = requestBlock(path, [["x-a", "b".repeat(int(200))]]);
        const cut = int(block.length);
        frames.push(frame(HEADERS, END_STREAM, sid, block.subarray(0, cut)), frame(CONTINUATION, END_HEADERS, sid, block.subarray(cut)));
        sid += 2;
        break;
      }
      case "trailers":
        frames.push(
          frame(HEADERS, END_HEADERS, sid, post),
          frame(DATA, 0, sid, Buffer.from("hello")),
          frame(HEADERS, END_STREAM | END_HEADERS, sid, Buffer.from([0x00, 3, 120, 45, 116, 1, 49])), // x-t: 1
        );
        sid += 2;
        break;
      case "padded": {
        const pad = int(20);
        frames.push(
          frame(HEADERS, END_STREAM | END_HEADERS | 0x8, sid, Buffer.concat([Buffer.from([pad]), requestBlock(path), Buffer.alloc(pad)])),
        );
        sid += 2;
        break;
      }
      case "window":
        frames.push(frame(WINDOW_UPDATE, 0, r() < 0.5 ? 0 : Math.max(1, sid - 2), u32(int(2 ** 31))));
        break;
      case "ping":
        frames.push(frame(PING, 0, 0, Buffer.alloc(8, int(256))));
        break;
      case "rst":
        frames.push(rst(Math.max(1, sid - 2), int(14)));
        break;
      case "priority":
        frames.push(frame(2, 0, Math.max(1, sid - 2 * int(2)), Buffer.concat([u32(int(sid)), Buffer.from([int(256)])])));
        break;
      case "settings":
        frames.push(settings([[int(8) + 1, int(2 ** 24)]]));
        break;
      case "goaway":
        frames.push(frame(GOAWAY, 0, 0, Buffer.concat([u32(sid), u32(0)])));
        break;
      default:
        frames.push(frame(0xfa, int(256), int(sid + 2), Buffer.alloc(int(30), 1)));
    }
  }
  const mutations = int(4);
  for (let m = 0; m < mutations && frames.length > 0; m++) {
    const at = int(frames.length);
    const f = Buffer.from(frames[at]!);
    let kind = pick(["flip", "length", "type", "flags", "stream", "cut", "double", "drop", "swap", "insert"]);
    // A piece shorter than a frame header (cut or inserted bytes) has no fields to change.
    if (f.length < 9 && ["length", "type", "flags", "stream"].includes(kind)) kind = "flip";
    did.push(`${kind}@${at}`);
    switch (kind) {
      case "flip":
        if (f.length > 0) {
          const k = int(f.length);
          f[k] = f[k]! ^ (1 << int(8));
        }
        frames[at] = f;
        break;
      case "length":
        f.writeUIntBE(r() < 0.5 ? int(64) : int(2 ** 24), 0, 3);
        frames[at] = f;
        break;
      case "type":
        f[3] = r() < 0.8 ? int(10) : int(256);
        frames[at] = f;
        break;
      case "flags":
        f[4] = int(256);
        frames[at] = f;
        break;
      case "stream":
        f.writeUInt32BE(pick([0, 2, 1, 3, 2 ** 31 - 1, int(2 ** 31)]), 5);
        frames[at] = f;
        break;
      case "cut":
        frames[at] = f.subarray(0, int(f.length));
        frames.length = at + 1;
        break;
      case "double":
        frames.splice(at, 0, f);
        break;
      case "drop":
        frames.splice(at, 1);
        break;
      case "swap": {
        const other = int(frames.length);
        [frames[at], frames[other]] = [frames[other]!, f];
        break;
      }
      default:
        frames.splice(at, 0, Buffer.from(Array.from({ length: int(20) + 1 }, () => int(256))));
    }
  }
  return { frames, did };
}

interface Outcome {
  /** Closed by the server after the client's end; false: still open 5 s after it. */
  closed: boolean;
  statuses: number[];
}

const SYNC = Buffer.from("fuzzsync");

/**
 * Send a case and a PING, wait for its ACK or a GOAWAY (the server has read everything before it; a case that
 * leaves a frame unfinished swallows the PING: then at most 300 ms) and, for at most 200 ms, for
 * Fulcrum's requests to finish (a stream whose body never ended waits for it), so that most
 * requests reach the backend; then end the client's side and collect the response statuses until
 * the server closes. The waits bound how much of a case runs, not what it must do.
 */
function run(port: number, bytes: Buffer, idle: () => boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const statuses: number[] = [];
    const hpack = new HpackDecoder();
    let buf = Buffer.alloc(0);
    let block: Buffer[] = [];
    let synced!: () => void;
    const sync = new Promise<void>((r) => (synced = r));
    const s = connect(port, "127.0.0.1");
    let timer: ReturnType<typeof setTimeout> | undefined;
    s.on("error", () => {});
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        const type = buf[3]!, flags = buf[4]!;
        const payload = buf.subarray(9, 9 + len);
        // The PING answered, or a GOAWAY: the server reads no further (a connection error).
        if ((type === PING && flags & ACK && payload.equals(SYNC)) || type === GOAWAY) synced();
        if (type === HEADERS || type === CONTINUATION) {
          block.push(payload);
          if (flags & END_HEADERS) {
            const b = Buffer.concat(block);
            block = [];
            hpack.decode(b, 0, b.length, (n, v) => n === ":status" && statuses.push(Number(v)));
          }
        }
        buf = buf.subarray(9 + len);
      }
    });
    s.on("close", () => {
      clearTimeout(timer);
      synced();
      resolve({ closed: true, statuses });
    });
    s.on("connect", async () => {
      s.write(Buffer.concat([bytes, frame(PING, 0, 0, SYNC)]));
      await Promise.race([sync, Bun.sleep(300)]);
      const deadline = Date.now() + 200;
      while (!idle() && !s.destroyed && Date.now() < deadline) await Bun.sleep(1);
      s.end();
      timer = setTimeout(() => {
        s.destroy();
        resolve({ closed: false, statuses });
      }, 5_000);
    });
  });
}

test(
  `${CASES} mutated HTTP/2 sessions (FUZZ_SEED=${seed}): no throw, no 500 of Fulcrum's own, every connection closed, clean requests served after`,
  async () => {
    const b = scope.backend("b", async (req) => new Response(req.body ? `got ${(await req.arrayBuffer()).byteLength}` : "ok"));
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
log: { access_log: false }
`);
    const port = Number(new URL(f.url).port);
    const only = process.env.FUZZ_CASE !== undefined ? [Number(process.env.FUZZ_CASE)] : Array.from({ length: CASES }, (_, i) => i);
    const failures: string[] = [];
    // Errors thrown inside Fulcrum (logged at most once per 10 s): each names the case that was running.
    const internal = () =>
      f.records.filter((r) => String(r.rawMessage).startsWith("internal error")).map((r) => String(r.properties.stack));
    let next = 0, answered = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      // Ten failures are enough to read; the rest would only add time.
      while (next < only.length && failures.length < 10) {
        const i = only[next++]!;
        const c = makeCase(i);
        const errorsBefore = internal().length;
        const out = await run(port, Buffer.concat([PREFACE, ...c.frames]), () => f.server.gateway.inflight() === 0);
        answered += out.statuses.length;
        const problems = [
          ...(out.closed ? [] : ["the connection was still open 5 s after the client finished sending"]),
          ...(internal().length > errorsBefore ? [`an error was thrown inside Fulcrum while it ran: ${internal().at(-1)}`] : []),
          ...(out.statuses.includes(500) ? [`statuses ${out.statuses.join(",")}`] : []),
        ];
        if (problems.length) failures.push(`case ${i} (FUZZ_SEED=${seed} FUZZ_CASE=${i}; ${c.did.join(" ")}): ${problems.join("; ")}`);
      }
    }));
    console.log(`h2 fuzz (seed ${seed}): ${only.length} cases, ${answered} responses, ${b.requests.length} requests reached the backend`);
    expect(failures).toEqual([]);
    // Nothing thrown inside Fulcrum (a listener or handler error is logged, core/proxy/server.ts).
    expect(internal()).toEqual([]);
    // Every connection is closed: no request of theirs may be left in flight.
    await until(() => f.server.gateway.inflight() === 0, 10_000, "no request in flight once every connection closed");
    // Clean requests still work, over HTTP/2 and HTTP/1.1.
    const c = await rawH2(port);
    scope.cleanups.push(() => c.destroy());
    await c.write(get(1, "/after"));
    await until(() => c.frames.some((x) => x.stream === 1 && x.type === HEADERS), 5000, "a response to a clean request");
    expect((await fetch(`${f.url}/after`)).status).toBe(200);
  },
  120_000,
);
