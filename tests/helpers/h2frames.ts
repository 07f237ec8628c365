/**
 * HTTP/2 frames written by hand (RFC 9113 §4, §6), for clients that misbehave on purpose: rapid
 * reset, CONTINUATION floods, SETTINGS and PING floods, windows that never open. HPACK is kept to
 * the static table and literals without indexing (RFC 7541 §6.1, §6.2.2), so no encoder is needed.
 */
import { Buffer } from "node:buffer";
import { connect, type Socket } from "node:net";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const DATA = 0, HEADERS = 1, RST_STREAM = 3, SETTINGS = 4, PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9;
export const END_STREAM = 0x1, END_HEADERS = 0x4, ACK = 0x1;

export function frame(type: number, flags: number, stream: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream & 0x7fffffff, 5);
  b.set(payload, 9);
  return b;
}

/** SETTINGS with the given (id, value) pairs. */
export function settings(pairs: [number, number][] = []): Buffer {
  const p = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(SETTINGS, 0, 0, p);
}

/** A literal header field without indexing, new name (RFC 7541 §6.2.2), lengths < 127 or longer (7-bit prefix integers). */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

function hpackInt(n: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (n < max) return Buffer.from([first | n]);
  const out = [first | max];
  n -= max;
  while (n >= 128) {
    out.push((n % 128) + 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const bytes = Buffer.from(s, "latin1");
  return Buffer.concat([hpackInt(bytes.length, 7, 0), bytes]);
}

/** A header block for GET `path` (:method GET, :scheme http from the static table; :path and :authority literal). */
export function requestBlock(path = "/", extra: [string, string][] = []): Buffer {
  return Buffer.concat([
    Buffer.from([0x82, 0x86]), // :method GET, :scheme http
    Buffer.from([0x04]),
    hpackString(path), // :path, literal without indexing, indexed name 4
    Buffer.from([0x01]),
    hpackString("x"), // :authority, indexed name 1
    ...extra.map(([n, v]) => literal(n, v)),
  ]);
}

/** HEADERS for a GET, ending the stream. */
export function get(stream: number, path = "/"): Buffer {
  return frame(HEADERS, END_STREAM | END_HEADERS, stream, requestBlock(path));
}

export function rst(stream: number, code = 8 /* CANCEL */): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(RST_STREAM, 0, stream, p);
}

export function ping(): Buffer {
  return frame(PING, 0, 0, Buffer.alloc(8));
}

/** A raw client connection that collects the frames the server sends back. */
export class RawH2 {
  readonly socket: Socket;
  readonly frames: { type: number; flags: number; stream: number; payload: Buffer }[] = [];
  closed = false;
  readonly closedAt: Promise<void>;
  #buf: Buffer = Buffer.alloc(0);
  bytesIn = 0;

  constructor(port: number, opts: { read?: boolean } = {}) {
    this.socket = connect(port, "127.0.0.1");
    this.socket.on("error", () => {});
    this.closedAt = new Promise((r) => this.socket.once("close", () => ((this.closed = true), r())));
    this.socket.on("data", (d: Buffer) => {
      this.bytesIn += d.length;
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        this.frames.push({
          type: this.#buf[3]!,
          flags: this.#buf[4]!,
          stream: this.#buf.readUInt32BE(5) & 0x7fffffff,
          payload: this.#buf.subarray(9, 9 + len),
        });
        this.#buf = this.#buf.subarray(9 + len);
      }
    });
    if (opts.read === false) this.socket.pause();
  }

  /** Resolves once connected; sends the preface and SETTINGS. */
  async open(settingsPairs: [number, number][] = []): Promise<void> {
    await new Promise<void>((r) => this.socket.once("connect", () => r()));
    // The server's preface starts with SETTINGS before ours is read; skip it in `frames` by type.
    this.write(Buffer.concat([PREFACE, settings(settingsPairs), frame(SETTINGS, ACK, 0)]));
  }

  /** Write; resolves when the kernel took it (false if the connection is gone). */
  write(data: Buffer): Promise<boolean> {
    if (this.closed || this.socket.destroyed) return Promise.resolve(false);
    return new Promise((r) => {
      const ok = this.socket.write(data, (e) => r(!e));
      if (!ok) this.socket.once("drain", () => {});
    });
  }

  /** The GOAWAY's error code, if one came. */
  goaway(): number | undefined {
    const g = this.frames.find((f) => f.type === GOAWAY);
    return g === undefined ? undefined : g.payload.readUInt32BE(4);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export async function rawH2(port: number, opts?: { read?: boolean; settings?: [number, number][] }): Promise<RawH2> {
  const c = new RawH2(port, opts);
  await c.open(opts?.settings);
  return c;
}
