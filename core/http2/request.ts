/**
 * HEADERS and CONTINUATION frames of a connection (conn.ts): the header block gathered, decoded
 * (HPACK state kept whatever happens to the stream), and acted on: a new stream (its request
 * checked, then handed to the front), trailers ending a request body, or a refusal.
 */
import { Buffer } from "node:buffer";
import { RequestError } from "../http1/request-head.ts";
import type { Http2Settings } from "../runtime/types.ts";
import { checkTrailers, Malformed, requestFields } from "./fields.ts";
import * as F from "./frames.ts";
import { type H2Head, requestHead } from "./headers.ts";
import { type HpackDecoder, HpackError } from "./hpack.ts";
import { H2Stream, type StreamHost } from "./stream.ts";

/** What opening a stream needs of the listener's front (front.ts). */
export interface RequestHost {
  readonly settings: Http2Settings;
  readonly maxBody: number;
  /** A request to serve: queued, handed to the gateway at the end of the read (dispatch). */
  request(c: RequestConn, s: H2Stream, head: H2Head): void;
  /** The read is parsed: streams still open go to the gateway (one reset in the same read never does). */
  dispatch(): void;
}

/** What header blocks need of their connection (H2Connection, conn.ts). */
export interface RequestConn extends StreamHost {
  readonly front: RequestHost;
  readonly dec: HpackDecoder;
  readonly streams: Map<number, H2Stream>;
  readonly peerWindow: number;
  readonly goaway: boolean;
  readonly active: number;
  lastStream: number;
  blockStream: number;
  blockFlags: number;
  blockParts: Buffer[];
  error(code: number, reason: string): void;
  streamError(id: number, code: number): void;
  opened(s: H2Stream): void;
}

const TEXT = ["content-type", "text/plain; charset=utf-8"];

export function headerBlock(c: RequestConn, type: number, flags: number, id: number, b: Buffer, p: number, end: number): void {
  if (type === F.CONTINUATION) {
    if (c.blockStream === 0 || id !== c.blockStream) return c.error(F.PROTOCOL_ERROR, "CONTINUATION without its HEADERS");
    c.blockParts.push(Buffer.from(b.subarray(p, end)));
    if ((flags & F.END_HEADERS) === 0) return;
    const block = Buffer.concat(c.blockParts);
    const headersFlags = c.blockFlags;
    c.blockStream = 0;
    c.blockParts = [];
    return complete(c, headersFlags, id, block, 0, block.length);
  }
  if (id === 0) return c.error(F.PROTOCOL_ERROR, "HEADERS on stream 0");
  let start = p;
  let stop = end;
  if ((flags & F.PADDED) !== 0) {
    const pad = end > p ? b[p]! : 0;
    start++;
    stop -= pad;
  }
  if ((flags & F.PRIORITY_FLAG) !== 0) {
    if (stop - start >= 5 && (b.readUInt32BE(start) & F.MAX_WINDOW) === id) {
      // A stream depending on itself (§5.3.1): decoded all the same, then refused.
      start += 5;
      if (stop < start) return c.error(F.PROTOCOL_ERROR, "padding longer than the frame");
      decode(c, b, start, stop);
      return c.streamError(id, F.PROTOCOL_ERROR);
    }
    start += 5;
  }
  if (stop < start) return c.error(F.PROTOCOL_ERROR, "padding longer than the frame");
  if ((flags & F.END_HEADERS) === 0) {
    c.blockStream = id;
    c.blockFlags = flags;
    c.blockParts = [Buffer.from(b.subarray(start, stop))];
    return;
  }
  complete(c, flags, id, b, start, stop);
}

/** Decode a block; the fields (name, value, …), or undefined past max_header_list_size (decoded to the end all the same). */
function decode(c: RequestConn, b: Buffer, start: number, end: number): string[] | undefined | null {
  const list: string[] = [];
  const max = c.front.settings.maxHeaderListSize;
  let size = 0;
  try {
    c.dec.decode(b, start, end, (name, value) => {
      size += name.length + value.length + 32;
      if (size <= max) list.push(name, value);
    });
  } catch (e) {
    if (!(e instanceof HpackError)) throw e;
    c.error(F.COMPRESSION_ERROR, `header block: ${e.message}`);
    return null;
  }
  return size <= max ? list : undefined;
}

function complete(c: RequestConn, flags: number, id: number, b: Buffer, start: number, end: number): void {
  const list = decode(c, b, start, end);
  if (list === null) return;
  const endStream = (flags & F.END_STREAM) !== 0;
  const open = c.streams.get(id);
  if (open !== undefined) {
    // Trailers: they end the body; their fields are not forwarded (HTTP/1.1 backends get none).
    if (open.remoteDone) return c.streamError(id, F.STREAM_CLOSED);
    if (!endStream || list === undefined) return c.streamError(id, F.PROTOCOL_ERROR);
    try {
      checkTrailers(list);
    } catch {
      return c.streamError(id, F.PROTOCOL_ERROR);
    }
    if (open.declared >= 0 && open.received !== open.declared) return c.streamError(id, F.PROTOCOL_ERROR);
    return open.remoteEnd();
  }
  if ((id & 1) === 0) return c.error(F.PROTOCOL_ERROR, "a client stream with an even number");
  // A stream closed already (reset by this side, say, with the client's frames in flight): ignored.
  if (id <= c.lastStream) return;
  c.lastStream = id;
  // After GOAWAY, streams above its last stream are not served (the client retries them elsewhere).
  if (c.goaway) return;
  const settings = c.front.settings;
  if (c.active >= settings.maxConcurrentStreams) return c.streamError(id, F.REFUSED_STREAM);
  const s = new H2Stream(c, id, c.peerWindow, settings.initialWindowSize);
  c.opened(s);
  if (endStream) s.remoteDone = true;
  if (list === undefined) return answer(s, 431, `request header list larger than ${settings.maxHeaderListSize} bytes`);
  let head: H2Head;
  try {
    head = requestHead(requestFields(list, true), settings.maxHeaderListSize);
  } catch (e) {
    if (e instanceof Malformed) return s.reset(F.PROTOCOL_ERROR);
    const status = e instanceof RequestError ? e.status : 400;
    return answer(s, status, e instanceof Error ? e.message : String(e));
  }
  const max = c.front.maxBody;
  // A declared length over the limit is refused before anything is read, as over HTTP/1.1.
  if (max > 0 && head.contentLength > max) return answer(s, 413, "request body too large");
  if (head.connectProtocol === undefined) {
    s.declared = head.contentLength;
    if (endStream && s.declared > 0) return s.reset(F.PROTOCOL_ERROR);
  }
  c.front.request(c, s, head);
}

/** An answer from this side (a request refused before the gateway): a short text. */
function answer(s: H2Stream, status: number, message: string): void {
  const body = Buffer.from(`${message}\n`);
  s.respond(status, TEXT, body.length, false);
  s.write(body, true);
}
