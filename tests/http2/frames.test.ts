// Fulcrum's HTTP/2 layer at the frame level (RFC 9113), with a raw client: settings and their
// acknowledgement, PING, malformed requests refused per stream (RST_STREAM PROTOCOL_ERROR, the
// backend never sees them), connection errors answered with the right GOAWAY code, the dynamic
// table across requests, padding, flow control at the edges of both windows, trailers,
// max_concurrent_streams, and GOAWAY on shutdown.
import { Buffer } from "node:buffer";
import { describe, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import { until } from "../helpers/websocket.ts";
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
  rawH2,
  type RawH2,
  requestBlock,
  RST_STREAM,
  SETTINGS,
  settings,
  WINDOW_UPDATE,
} from "../helpers/h2frames.ts";
import { huffmanEncode } from "../../core/http2/huffman.ts";
import { HpackDecoder } from "../../core/http2/hpack.ts";

const PROTOCOL_ERROR = 1, FLOW_CONTROL_ERROR = 3, STREAM_CLOSED = 5, FRAME_SIZE_ERROR = 6, REFUSED_STREAM = 7, COMPRESSION_ERROR = 9;
const PADDED = 0x8, PRIORITY = 0x20;
const scope = testScope();

/** An HPACK string literal, no Huffman. */
function str(s: string): Buffer {
  const b = Buffer.from(s, "latin1");
  if (b.length < 127) return Buffer.concat([Buffer.from([b.length]), b]);
  return Buffer.concat([Buffer.from([127, (b.length - 127) % 128 | 0x80, Math.floor((b.length - 127) / 128)]), b]);
}
/** A literal field without indexing, new name. */
const lit = (n: string, v: string) => Buffer.concat([Buffer.from([0]), str(n), str(v)]);
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};

async function setup(yaml = "", handler?: (req: Request) => Response | Promise<Response>) {
  const b = scope.backend("b", handler ?? (async (req) => new Response(req.body ? await req.text() : "ok")));
  const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true${yaml} }
pools: { web: { backends: ["${b.url}"] } }
`);
  const port = Number(new URL(f.url).port);
  const open = async (s?: [number, number][]) => {
    const c = await rawH2(port, { settings: s });
    scope.cleanups.push(() => c.destroy());
    return c;
  };
  return { b, f, port, open };
}

const on = (c: RawH2, stream: number, type: number) => c.frames.filter((x) => x.stream === stream && x.type === type);
const rstCode = (c: RawH2, stream: number) => on(c, stream, RST_STREAM)[0]?.payload.readUInt32BE(0);
const body = (c: RawH2, stream: number) => Buffer.concat(on(c, stream, DATA).map((x) => x.payload)).toString();
const ended = (c: RawH2, stream: number) => c.frames.some((x) => x.stream === stream && (x.flags & END_STREAM) !== 0);
const waitEnd = (c: RawH2, stream: number) => until(() => ended(c, stream) || rstCode(c, stream) !== undefined, 5000, `stream ${stream}`);

/** A request block with `fields` after :method GET, :scheme http, :path /, :authority x. */
const block = (...fields: Buffer[]) => Buffer.concat([requestBlock("/"), ...fields]);

describe("HTTP/2 frames", () => {
  test("the server's SETTINGS carry the listener's http2 values and ours are acknowledged; PING is answered", async () => {
    const { open } = await setup(", http2: { max_concurrent_streams: 7, initial_window_size: 32kib }");
    const c = await open();
    await c.write(frame(PING, 0, 0, Buffer.from("abcdefgh")));
    await until(() => c.frames.some((x) => x.type === PING));
    const s = c.frames.find((x) => x.type === SETTINGS && x.flags === 0)!;
    const values = new Map<number, number>();
    for (let i = 0; i < s.payload.length; i += 6) values.set(s.payload.readUInt16BE(i), s.payload.readUInt32BE(i + 2));
    expect(values.get(3)).toBe(7);
    expect(values.get(4)).toBe(32 * 1024);
    expect(values.get(8)).toBe(1); // SETTINGS_ENABLE_CONNECT_PROTOCOL
    expect(c.frames.some((x) => x.type === SETTINGS && x.flags === ACK && x.payload.length === 0)).toBe(true);
    const pong = c.frames.find((x) => x.type === PING)!;
    expect(pong.flags).toBe(ACK);
    expect(pong.payload.toString()).toBe("abcdefgh");
  });

  test("malformed requests get RST_STREAM PROTOCOL_ERROR, never reach the backend; the connection serves on", async () => {
    const { b, open } = await setup();
    const c = await open();
    const bad: Buffer[] = [
      block(lit("X-Upper", "1")),
      block(lit("connection", "keep-alive")),
      block(lit("transfer-encoding", "chunked")),
      block(lit("te", "gzip")),
      block(lit("x-ok", "1"), lit(":path", "/late")),
      block(lit(":foo", "1")),
      Buffer.concat([Buffer.from([0x82, 0x86, 0x01]), str("x")]), // no :path
      Buffer.concat([Buffer.from([0x82, 0x84, 0x01]), str("x")]), // no :scheme
      Buffer.concat([requestBlock("/"), Buffer.from([0x84])]), // :path twice
      block(lit("x-bad", "a\nb")),
      block(lit("x-space", " padded")),
      Buffer.concat([Buffer.from([0x86, 0x84, 0x01]), str("x"), lit(":protocol", "websocket"), Buffer.from([0x82])]), // :protocol on GET
    ];
    let id = 1;
    for (const blk of bad) {
      await c.write(frame(HEADERS, END_STREAM | END_HEADERS, id, blk));
      id += 2;
    }
    // Content-Length with no body, and a body longer than declared.
    await c.write(frame(HEADERS, END_STREAM | END_HEADERS, id, block(lit("content-length", "5"))));
    const longer = id + 2;
    await c.write(
      frame(HEADERS, END_HEADERS, longer, Buffer.concat([Buffer.from([0x83, 0x86, 0x84, 0x01]), str("x"), lit("content-length", "2")])),
    );
    await c.write(frame(DATA, END_STREAM, longer, Buffer.from("abc")));
    await until(() => rstCode(c, longer) !== undefined, 5000, "the last RST_STREAM");
    for (let s = 1; s <= longer; s += 2) expect([s, rstCode(c, s)]).toEqual([s, PROTOCOL_ERROR]);
    expect(c.goaway()).toBeUndefined();
    await c.write(get(longer + 2, "/after"));
    await waitEnd(c, longer + 2);
    expect(body(c, longer + 2)).toBe("ok");
    expect(b.requests.map((r) => r.path)).toEqual(["/after"]);
  });

  const connectionErrors: [string, Buffer, number][] = [
    ["DATA on stream 0", frame(DATA, 0, 0, Buffer.from("x")), PROTOCOL_ERROR],
    ["HEADERS on an even stream", frame(HEADERS, END_STREAM | END_HEADERS, 2, requestBlock("/")), PROTOCOL_ERROR],
    ["a frame over SETTINGS_MAX_FRAME_SIZE", frame(DATA, 0, 1, Buffer.alloc(16385)), FRAME_SIZE_ERROR],
    ["PING of 7 bytes", frame(PING, 0, 0, Buffer.alloc(7)), FRAME_SIZE_ERROR],
    ["SETTINGS of 5 bytes", frame(SETTINGS, 0, 0, Buffer.alloc(5)), FRAME_SIZE_ERROR],
    ["SETTINGS ACK with a payload", frame(SETTINGS, ACK, 0, Buffer.alloc(6)), FRAME_SIZE_ERROR],
    ["SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1", settings([[4, 0x80000000]]), FLOW_CONTROL_ERROR],
    ["SETTINGS_MAX_FRAME_SIZE under 16384", settings([[5, 1000]]), PROTOCOL_ERROR],
    ["SETTINGS_ENABLE_PUSH of 2", settings([[2, 2]]), PROTOCOL_ERROR],
    ["WINDOW_UPDATE of 0 on the connection", frame(WINDOW_UPDATE, 0, 0, u32(0)), PROTOCOL_ERROR],
    ["the connection's window over 2^31-1", frame(WINDOW_UPDATE, 0, 0, u32(0x7fffffff)), FLOW_CONTROL_ERROR],
    ["CONTINUATION without HEADERS", frame(CONTINUATION, END_HEADERS, 1, requestBlock("/")), PROTOCOL_ERROR],
    [
      "a frame inside a header block",
      Buffer.concat([frame(HEADERS, 0, 1, requestBlock("/")), frame(PING, 0, 0, Buffer.alloc(8))]),
      PROTOCOL_ERROR,
    ],
    ["PUSH_PROMISE from a client", frame(5, END_HEADERS, 1, Buffer.concat([u32(2), requestBlock("/")])), PROTOCOL_ERROR],
    ["RST_STREAM on an idle stream", frame(RST_STREAM, 0, 9, u32(8)), PROTOCOL_ERROR],
    ["an HPACK index past the table", frame(HEADERS, END_STREAM | END_HEADERS, 1, Buffer.from([0x82, 0xff, 0x10])), COMPRESSION_ERROR],
    ["padding as long as the frame", frame(DATA, PADDED, 1, Buffer.from([5, 0, 0, 0, 0])), PROTOCOL_ERROR],
  ];
  for (const [name, bytes, code] of connectionErrors) {
    test(`connection error: ${name} → GOAWAY ${code}`, async () => {
      const { open } = await setup();
      const c = await open();
      await c.write(bytes);
      await until(() => c.goaway() !== undefined, 5000, "GOAWAY");
      expect(c.goaway()).toBe(code);
      await until(() => c.closed, 5000, "the close");
    });
  }

  test("a first frame other than SETTINGS is a connection error", async () => {
    const { port } = await setup();
    const { connect } = await import("node:net");
    const s = connect(port, "127.0.0.1");
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    s.on("error", () => {});
    await new Promise((r) => s.once("connect", r));
    s.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(PING, 0, 0, Buffer.alloc(8))]));
    await until(() => Buffer.concat(got).includes(Buffer.from([0, 0, 8, GOAWAY])), 5000, "GOAWAY");
    const all = Buffer.concat(got);
    const at = all.indexOf(Buffer.from([0, 0, 8, GOAWAY]));
    expect(all.readUInt32BE(at + 13)).toBe(PROTOCOL_ERROR);
    s.destroy();
  });

  test("the dynamic table carries over between requests; a Huffman :path is decoded", async () => {
    const { b, open } = await setup();
    const c = await open();
    // Literal with incremental indexing, indexed name :path (0x44), value "/indexed": entry 62.
    await c.write(
      frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        Buffer.concat([Buffer.from([0x82, 0x86, 0x44]), str("/indexed"), Buffer.from([0x01]), str("x")]),
      ),
    );
    await waitEnd(c, 1);
    await c.write(frame(HEADERS, END_STREAM | END_HEADERS, 3, Buffer.from([0x82, 0x86, 0x80 | 62, 0x01, 0x01, 0x78])));
    await waitEnd(c, 3);
    const h = huffmanEncode("/huffman/path");
    await c.write(
      frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        5,
        Buffer.concat([Buffer.from([0x82, 0x86, 0x04, 0x80 | h.length]), h, Buffer.from([0x01, 0x01, 0x78])]),
      ),
    );
    await waitEnd(c, 5);
    // A table size update to 0 empties it: entry 62 is gone, a COMPRESSION_ERROR.
    await c.write(frame(HEADERS, END_STREAM | END_HEADERS, 7, Buffer.from([0x20, 0x82, 0x86, 0x84, 0x01, 0x01, 0x78])));
    await waitEnd(c, 7);
    await c.write(frame(HEADERS, END_STREAM | END_HEADERS, 9, Buffer.from([0x82, 0x86, 0x80 | 62, 0x01, 0x01, 0x78])));
    await until(() => c.goaway() !== undefined, 5000, "GOAWAY");
    expect(c.goaway()).toBe(COMPRESSION_ERROR);
    expect(b.requests.map((r) => r.path)).toEqual(["/indexed", "/indexed", "/huffman/path", "/"]);
  });

  test("padded HEADERS (with priority) and padded DATA: the body arrives without the padding", async () => {
    const { b, open } = await setup();
    const c = await open();
    const blk = Buffer.concat([Buffer.from([0x83, 0x86, 0x84, 0x01]), str("x")]);
    await c.write(
      frame(
        HEADERS,
        END_HEADERS | PADDED | PRIORITY,
        1,
        Buffer.concat([Buffer.from([3]), u32(0), Buffer.from([16]), blk, Buffer.alloc(3)]),
      ),
    );
    await c.write(frame(DATA, PADDED, 1, Buffer.concat([Buffer.from([10]), Buffer.from("hello "), Buffer.alloc(10)])));
    await c.write(frame(DATA, END_STREAM | PADDED, 1, Buffer.concat([Buffer.from([0]), Buffer.from("world")])));
    await waitEnd(c, 1);
    expect(body(c, 1)).toBe("hello world");
    expect(b.requests[0]!.method).toBe("POST");
  });

  test("frames split across reads anywhere (inside a header, inside a payload) are read the same", async () => {
    const { b, open } = await setup();
    const c = await open();
    const big = Buffer.alloc(16384, "a");
    const post = (id: number) =>
      Buffer.concat([
        frame(HEADERS, END_HEADERS, id, Buffer.concat([Buffer.from([0x83, 0x86, 0x84, 0x01]), str("x")])),
        frame(DATA, 0, id, big),
        frame(DATA, END_STREAM, id, Buffer.from("end")),
      ]);
    const bytes = Buffer.concat([post(1), post(3)]);
    // Pieces of 1, 2, 5, 9, 10 and 4000 bytes in turn: cuts fall in frame headers, at their edges and in payloads.
    const sizes = [1, 2, 5, 9, 10, 4000];
    for (let at = 0, k = 0; at < bytes.length; k++) {
      const end = Math.min(bytes.length, at + sizes[k % sizes.length]!);
      await c.write(bytes.subarray(at, end));
      at = end;
    }
    await waitEnd(c, 1);
    await waitEnd(c, 3);
    expect(body(c, 1)).toBe("a".repeat(16384) + "end");
    expect(body(c, 3)).toBe("a".repeat(16384) + "end");
    expect(b.requests.map((r) => r.method)).toEqual(["POST", "POST"]);
    expect(c.goaway()).toBeUndefined();
  });

  test("trailers end a request body; pseudo-headers in trailers are malformed", async () => {
    const { open } = await setup();
    const c = await open();
    const post = Buffer.concat([Buffer.from([0x83, 0x86, 0x84, 0x01]), str("x")]);
    await c.write(frame(HEADERS, END_HEADERS, 1, post));
    await c.write(frame(DATA, 0, 1, Buffer.from("body")));
    await c.write(frame(HEADERS, END_STREAM | END_HEADERS, 1, lit("x-checksum", "1")));
    await waitEnd(c, 1);
    expect(body(c, 1)).toBe("body");
    await c.write(frame(HEADERS, END_HEADERS, 3, post));
    await c.write(frame(HEADERS, END_STREAM | END_HEADERS, 3, Buffer.from([0x84])));
    await waitEnd(c, 3);
    expect(rstCode(c, 3)).toBe(PROTOCOL_ERROR);
  });

  test("flow control: an answer stops at the client's stream window and goes on with WINDOW_UPDATE; frames keep to 16 KiB", async () => {
    const big = "z".repeat(40_000);
    const { open } = await setup("", () => new Response(big));
    const c = await open([[4, 10]]);
    await c.write(get(1, "/big"));
    await until(() => on(c, 1, DATA).length > 0);
    await Bun.sleep(50); // nothing more may come: the window is spent
    expect(body(c, 1)).toBe("z".repeat(10));
    await c.write(frame(WINDOW_UPDATE, 0, 1, u32(50_000)));
    await waitEnd(c, 1);
    expect(body(c, 1)).toBe(big);
    expect(on(c, 1, DATA).every((x) => x.payload.length <= 16384)).toBe(true);
    // The connection's window (65,535 to begin with) is spent too: a second answer stops at what is left.
    await c.write(Buffer.concat([get(3, "/big"), frame(WINDOW_UPDATE, 0, 3, u32(50_000))]));
    await until(() => body(c, 3).length === 65535 - 40_000);
    await Bun.sleep(50);
    expect(body(c, 3).length).toBe(65535 - 40_000);
    await c.write(frame(WINDOW_UPDATE, 0, 0, u32(100_000)));
    await waitEnd(c, 3);
    expect(body(c, 3)).toBe(big);
  });

  test("flow control: a client sending past its stream window gets RST_STREAM FLOW_CONTROL_ERROR", async () => {
    const { open } = await setup(", http2: { initial_window_size: 16kib }", async (req) => {
      await new Promise((r) => setTimeout(r, 300));
      return new Response(String((await req.arrayBuffer()).byteLength));
    });
    const c = await open();
    const post = Buffer.concat([Buffer.from([0x83, 0x86, 0x84, 0x01]), str("x")]);
    await c.write(frame(HEADERS, END_HEADERS, 1, post));
    // Exactly the window: fine. One byte more before any WINDOW_UPDATE could come: refused.
    await c.write(Buffer.concat([frame(DATA, 0, 1, Buffer.alloc(16384)), frame(DATA, 0, 1, Buffer.alloc(1))]));
    await until(() => rstCode(c, 1) !== undefined, 5000, "RST_STREAM");
    expect([FLOW_CONTROL_ERROR, STREAM_CLOSED]).toContain(rstCode(c, 1)!);
    expect(c.goaway()).toBeUndefined();
  });

  test("max_concurrent_streams: a stream past it is refused (REFUSED_STREAM), the others answered", async () => {
    const { open } = await setup(", http2: { max_concurrent_streams: 2 }", async () => {
      await new Promise((r) => setTimeout(r, 200));
      return new Response("slow");
    });
    const c = await open();
    await c.write(Buffer.concat([get(1), get(3), get(5)]));
    await until(() => rstCode(c, 5) !== undefined, 5000, "RST_STREAM on 5");
    expect(rstCode(c, 5)).toBe(REFUSED_STREAM);
    await waitEnd(c, 1);
    await waitEnd(c, 3);
    expect([body(c, 1), body(c, 3)]).toEqual(["slow", "slow"]);
  });

  test("a backend's header names reach the client lower-case, connection-specific ones dropped, values intact", async () => {
    const { open } = await setup(
      "",
      () => new Response("ok", { headers: { "X-Mixed-Case-Name": "Value  with  spaces", "x-rare-header-name-here": "v", etag: '"e"' } }),
    );
    const c = await open();
    await c.write(get(1));
    await waitEnd(c, 1);
    const fields: Record<string, string> = {};
    const h = on(c, 1, HEADERS)[0]!;
    new HpackDecoder().decode(h.payload, 0, h.payload.length, (n, v) => (fields[n] = v));
    expect(fields[":status"]).toBe("200");
    expect(fields["x-mixed-case-name"]).toBe("Value  with  spaces");
    expect(fields["x-rare-header-name-here"]).toBe("v");
    expect(fields.etag).toBe('"e"');
    expect(fields["content-length"]).toBe("2");
    expect(Object.keys(fields).some((n) => n !== n.toLowerCase() || n === "connection" || n === "keep-alive")).toBe(false);
  });

  test("shutdown: GOAWAY with the last stream; the stream in flight is answered, then the connection closes", async () => {
    const { f, b, open } = await setup("", async () => {
      await new Promise((r) => setTimeout(r, 200));
      return new Response("done");
    });
    const c = await open();
    await c.write(get(1));
    await until(() => b.requests.length === 1);
    const stopping = f.server.shutdown();
    await until(() => c.goaway() !== undefined);
    expect(c.goaway()).toBe(0);
    expect(c.frames.find((x) => x.type === GOAWAY)!.payload.readUInt32BE(0)).toBe(1);
    await waitEnd(c, 1);
    expect(body(c, 1)).toBe("done");
    await stopping;
    await until(() => c.closed, 5000, "the close");
  });
});
