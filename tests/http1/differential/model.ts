/**
 * Fulcrum's verdict on a case without sockets: the listener's request loop
 * (core/listener/connection.ts: head, body by length or chunked, next request while keep-alive)
 * run over core/http1's parser and chunked decoder. The differential test's verdict is always the
 * real proxy's; this model names the reason of a refusal (the client may only get "bad request
 * body" once forwarding started) and lets the fuzzer compare parsers before round trips. It must
 * agree with the real proxy on what is forwarded, and the test checks that it does.
 */
import { Buffer } from "node:buffer";
import { ChunkedDecoder } from "../../../core/http1/chunked.ts";
import { parseRequestHead, RequestError } from "../../../core/http1/request.ts";

export interface ModelRequest {
  method: string;
  target: string;
  body: Buffer;
  /** Where its method starts in the case's bytes. */
  start: number;
}

export interface ModelVerdict {
  requests: ModelRequest[];
  /** Why the next request was refused (status and Fulcrum's message), and where it starts. */
  error?: { status: number; message: string; at: number };
  /** After the last request: refused, closed (no keep-alive), waiting for more bytes, or nothing left. */
  end: "refused" | "closed" | "incomplete" | "idle";
}

export function fulcrumModel(bytes: Buffer, maxBody: number): ModelVerdict {
  const requests: ModelRequest[] = [];
  let off = 0;
  for (;;) {
    if (off >= bytes.length) return { requests, end: "idle" };
    const at = skipEmptyLines(bytes, off);
    let head: ReturnType<typeof parseRequestHead>;
    try {
      head = parseRequestHead(bytes, off);
    } catch (e) {
      if (!(e instanceof RequestError)) throw e;
      return { requests, error: { status: e.status, message: e.message, at }, end: "refused" };
    }
    if (head === undefined) return { requests, end: "incomplete" };
    if (maxBody > 0 && head.contentLength > maxBody)
      return { requests, error: { status: 413, message: "request body too large", at }, end: "refused" };
    off = head.end;
    let body: Buffer;
    if (head.chunked) {
      const parts: Uint8Array[] = [];
      const decoder = new ChunkedDecoder();
      try {
        off = decoder.feed(bytes, off, bytes.length, { push: (d: Uint8Array) => parts.push(d) });
      } catch (e) {
        return { requests, error: { status: 400, message: `bad chunked request body: ${(e as Error).message}`, at }, end: "refused" };
      }
      body = Buffer.concat(parts);
      if (maxBody > 0 && body.length > maxBody)
        return { requests, error: { status: 413, message: "request body too large", at }, end: "refused" };
      if (!decoder.done) return { requests, end: "incomplete" };
    } else {
      const n = Math.max(0, head.contentLength);
      if (bytes.length - off < n) return { requests, end: "incomplete" };
      body = Buffer.from(bytes.subarray(off, off + n));
      off += n;
    }
    requests.push({ method: head.method, target: head.target, body, start: at });
    if (!head.keepAlive) return { requests, end: "closed" };
  }
}

/** Past the empty lines a client may send before a request (RFC 9112 §2.2), as the parser skips them. */
function skipEmptyLines(bytes: Buffer, off: number): number {
  while (off + 1 < bytes.length && bytes[off] === 13 && bytes[off + 1] === 10) off += 2;
  return off;
}
