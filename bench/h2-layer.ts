// How much of HTTP/2's cost is the HTTP/2 layer: the same raw-frame load (CONNS connections × STREAMS
// in flight, GET with literal headers, no Huffman) against (A) Bun's node:http2 server on its own
// listen(), (B) Fulcrum's HTTP/2 layer (core/http2/: H2Front on Bun.listen sockets, each stream a
// RawExchange answered at once), and (C) a minimal framing written on bytes (SETTINGS, PING,
// HEADERS, DATA; HPACK from the static table and literals, no Huffman, no dynamic table: just
// enough for this client, a ceiling). All answer 200 with 8 headers and 100 B, no proxying.
//
//   bun bench/h2-layer.ts [--seconds S] [--rounds N] [--conns C] [--streams M]
import http2 from "node:http2";
import { Buffer } from "node:buffer";
import { connect } from "node:net";
import { H2Front } from "../core/http2/front.ts";
import { HTTP2_DEFAULTS, type RawExchange, type TcpSocket } from "../core/runtime/types.ts";

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1]! : d;
};
const PORT_A = 18701;
const PORT_B = 18702;
const PORT_C = 18703;

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(id, 5);
  payload.copy(b, 9);
  return b;
}

if (args.includes("--serve")) serve();
else await measure();

function serve(): void {
  const BODY = Buffer.alloc(100, 97);
  const now = new Date().toUTCString();
  const HEADERS: Record<string, string | number> = {
    ":status": 200,
    server: "nginx/1.22.1",
    date: now,
    "content-type": "text/plain",
    "last-modified": now,
    etag: '"6b14c1ba-64"',
    "x-backend": "b1",
    "accept-ranges": "bytes",
    "content-length": 100,
  };
  // A: node:http2, on its own listen().
  const server = http2.createServer({ settings: { maxConcurrentStreams: 100, initialWindowSize: 1 << 20 } });
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.on("error", () => {});
    stream.respond({ ...HEADERS });
    stream.end(BODY);
  });
  server.listen(PORT_A, "127.0.0.1");
  // B: Fulcrum's layer, as the listener hands it sockets.
  const pairs = Object.entries(HEADERS).filter(([k]) => k !== ":status" && k !== "content-length").flatMap(([k, v]) => [k, String(v)]);
  const front = new H2Front((ex: RawExchange) => ex.respond(200, "OK", pairs, BODY, BODY.length), {
    settings: { ...HTTP2_DEFAULTS, initialWindowSize: 1 << 20 },
    maxBody: 0,
    idleMs: 0,
    scheme: "http",
    onError: (e) => console.error(e),
  });
  type Owner = { onData(b: Buffer): void; onDrain(): void; onClose(): void };
  Bun.listen<{ o?: Owner }>({
    hostname: "127.0.0.1",
    port: PORT_B,
    socket: {
      open(s) {
        s.data = {};
        front.accept("127.0.0.1", (owner) => {
          s.data.o = owner;
          return { socket: s as unknown as TcpSocket<unknown>, conn: { closeTaken: () => s.end() } };
        }, undefined);
      },
      data: (s, b) => s.data.o?.onData(b),
      drain: (s) => s.data.o?.onDrain(),
      close: (s) => s.data.o?.onClose(),
    },
  });
  // C: frames by hand.
  const lit = (name: string, value: string) => {
    const n = Buffer.from(name), v = Buffer.from(value);
    return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
  };
  const block = Buffer.concat([
    Buffer.from([0x88]),
    ...Object.entries(HEADERS).filter(([k]) => k !== ":status").map(([k, v]) => lit(k, String(v))),
  ]);
  const SETTINGS = frame(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100, 0, 4, 0, 16, 0, 0]));
  const ACK = frame(4, 1, 0, Buffer.alloc(0));
  class Conn {
    buf: Buffer | undefined;
    out: Buffer[] = [];
    preface = true;
    constructor(readonly s: { write(b: Uint8Array): number }) {
      s.write(SETTINGS);
    }
    data(chunk: Buffer): void {
      const b = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
      let i = 0;
      if (this.preface) {
        if (b.length < 24) return void (this.buf = b);
        i = 24;
        this.preface = false;
      }
      while (b.length - i >= 9) {
        const len = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
        if (b.length - i < 9 + len) break;
        const type = b[i + 3]!, flags = b[i + 4]!, id = b.readUInt32BE(i + 5) & 0x7fffffff;
        const p = i + 9;
        if (type === 1) this.headers(id, b, p, p + len);
        else if (type === 4 && (flags & 1) === 0) this.out.push(ACK);
        else if (type === 6 && (flags & 1) === 0) this.out.push(frame(6, 1, 0, b.subarray(p, p + 8)));
        i = p + len;
      }
      this.buf = i < b.length ? b.subarray(i) : undefined;
      if (this.out.length) {
        this.s.write(this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out));
        this.out = [];
      }
    }
    headers(id: number, b: Buffer, p: number, end: number): void {
      // Decoded into strings, as a server must (static table indexes and literals only).
      const h: string[] = [];
      while (p < end) {
        const c = b[p]!;
        if (c & 0x80) {
          h.push(`:${c & 0x7f}`, "");
          p++;
          continue;
        }
        const nameIdx = c & 0x0f;
        p++;
        let name = `:${nameIdx}`;
        if (nameIdx === 0) {
          const nl = b[p++]! & 0x7f;
          name = b.toString("latin1", p, p + nl);
          p += nl;
        }
        const vl = b[p++]! & 0x7f;
        h.push(name, b.toString("latin1", p, p + vl));
        p += vl;
      }
      this.out.push(frame(1, 4, id, block), frame(0, 1, id, BODY));
    }
  }
  Bun.listen<{ c: Conn }>({
    hostname: "127.0.0.1",
    port: PORT_C,
    socket: { open: (s) => void (s.data = { c: new Conn(s) }), data: (s, b) => s.data.c.data(b) },
  });
  console.log("ready");
}

/** The load: one process, raw frames; answers counted by END_STREAM. */
async function load(port: number, conns: number, streams: number, secs: number): Promise<number> {
  const block = Buffer.concat([
    Buffer.from([0x82, 0x86, 0x84]),
    Buffer.from([0x01, 9]),
    Buffer.from("127.0.0.1"),
    Buffer.from([0x0f, 0x2b, 11]),
    Buffer.from("h2layer/1.0"),
  ]);
  let done = 0;
  const t0 = performance.now();
  const end = t0 + secs * 1000;
  await Promise.all(Array.from({ length: conns }, () =>
    new Promise<void>((resolve) => {
      const s = connect(port, "127.0.0.1");
      let next = 1;
      let buf: Buffer | undefined;
      let inflight = 0;
      const send = (n: number) => {
        const parts: Buffer[] = [];
        for (let k = 0; k < n; k++, next += 2, inflight++) parts.push(frame(1, 5, next, block));
        s.write(Buffer.concat(parts));
      };
      s.on("connect", () => {
        s.write(Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
          frame(4, 0, 0, Buffer.from([0, 4, 0x7f, 0xff, 0xff, 0xff])),
          frame(8, 0, 0, Buffer.from([0x7f, 0, 0, 0])),
        ]));
        send(streams);
      });
      s.on("data", (d: Buffer) => {
        const b = buf ? Buffer.concat([buf, d]) : d;
        let i = 0;
        let finished = 0;
        while (b.length - i >= 9) {
          const len = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
          if (b.length - i < 9 + len) break;
          const type = b[i + 3]!, flags = b[i + 4]!;
          if (type === 4 && (flags & 1) === 0) s.write(frame(4, 1, 0, Buffer.alloc(0)));
          if ((type === 0 || type === 1) && (flags & 1)) finished++;
          i += 9 + len;
        }
        buf = i < b.length ? b.subarray(i) : undefined;
        done += finished;
        inflight -= finished;
        if (performance.now() < end) {
          if (finished) send(finished);
        } else if (inflight === 0) {
          s.destroy();
          resolve();
        }
      });
      s.on("error", () => resolve());
      s.on("close", () => resolve());
    })));
  return done / ((performance.now() - t0) / 1000);
}

async function measure(): Promise<void> {
  const secs = Number(opt("seconds", "4"));
  const rounds = Number(opt("rounds", "3"));
  const conns = Number(opt("conns", "32"));
  const streams = Number(opt("streams", "10"));
  const child = Bun.spawn([process.execPath, import.meta.path, "--serve"], { stdout: "pipe", stderr: "inherit" });
  const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  const a: number[] = [];
  const b: number[] = [];
  const c: number[] = [];
  for (let r = 0; r < rounds; r++) {
    a.push(await load(PORT_A, conns, streams, secs));
    b.push(await load(PORT_B, conns, streams, secs));
    c.push(await load(PORT_C, conns, streams, secs));
  }
  child.kill();
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const load1 = (await Bun.file("/proc/loadavg").text()).trim();
  console.log(`HTTP/2 layer, ${conns} connections × ${streams} streams, ${rounds} rounds × ${secs}s, medians (load average ${load1})`);
  console.log(`A node:http2, its own listen():   ${Math.round(median(a))} req/s (${a.map(Math.round).join(", ")})`);
  console.log(`B Fulcrum's HTTP/2 layer:          ${Math.round(median(b))} req/s (${b.map(Math.round).join(", ")})`);
  console.log(`C minimal framing on bytes:        ${Math.round(median(c))} req/s (${c.map(Math.round).join(", ")})`);
}
