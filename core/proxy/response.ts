/**
 * What the proxy answers: a backend's response on its way to the client (forwarded as bytes,
 * made into strings or a web Response only when middleware reads it), or a short error of ours.
 */
import { downstreamRaw } from "../http1/headers.ts";
import type { BodyInRead, HeaderBlock } from "../http1/bytes.ts";
import type { UpstreamResponse } from "../upstream/client.ts";
import type { Exchange } from "./exchange.ts";
import type { RawExchange } from "../runtime/types.ts";
import type { Upgraded } from "./tunnel.ts";

/** A short plain-text error response; never a stack trace. */
export function errorResponse(status: number, message: string, headers?: Record<string, string>): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

/**
 * A backend's response on its way to the client: hop-by-hop headers dropped, the body as bytes
 * or a stream. `length` is the body's declared length (-1 when unknown), also for HEAD.
 */
export interface Proxied {
  readonly kind: "proxied";
  readonly status: number;
  readonly statusText: string;
  /** name, value, … lower-cased, without hop-by-hop or Content-Length (made on first read when `block` is given). */
  readonly headers: string[];
  /** The same headers as the backend's bytes, when its client kept them (see UpstreamResponse.block). */
  readonly block: HeaderBlock | undefined;
  readonly length: number;
  readonly body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null;
  /** The whole body as it lies in the backend's read (UpstreamResponse.inRead): `body` makes a view of it. */
  readonly inRead?: BodyInRead | undefined;
  /** A 101 to an upgrade: the tunnel to open (tunnel.ts). */
  readonly upgraded?: Upgraded;
}

/** {@link Proxied} over an upstream response: forwarded as bytes, as strings only when read (middleware). */
export class ProxiedResponse implements Proxied {
  readonly kind = "proxied";
  upgraded: Upgraded | undefined = undefined;
  #headers: string[] | undefined;
  constructor(
    readonly res: UpstreamResponse,
    readonly block: HeaderBlock | undefined,
    readonly length: number,
    headers: string[] | undefined,
  ) {
    this.#headers = headers;
  }
  get status() {
    return this.res.status;
  }
  get statusText() {
    return this.res.statusText;
  }
  get body() {
    return this.res.body;
  }
  get inRead() {
    return this.res.inRead;
  }
  get headers(): string[] {
    return (this.#headers ??= downstreamRaw(this.res.rawHeaders).headers);
  }
}

/** Answer `raw` with a backend's response: a whole body still in its read goes out from there (RawExchange.respondInRead). */
export function respondRaw(raw: RawExchange, result: Proxied, headers: readonly string[] | HeaderBlock): void {
  const inRead = result.inRead;
  if (inRead !== undefined && raw.respondInRead !== undefined) raw.respondInRead(result.status, result.statusText, headers, inRead);
  else raw.respond(result.status, result.statusText, headers, result.body, result.length);
}

/** What {@link proxyToPool} answers: the backend's response, or an answer of ours (errors). */
export type ProxyResult = Proxied | Response;

/** As a web `Response` (for middleware); a header the runtime refuses makes it a 502. */
export function toResponse(result: ProxyResult, ex: Exchange): Response {
  if (result instanceof Response) return result;
  const headers = new Headers();
  const h = result.headers;
  try {
    for (let i = 0; i < h.length; i += 2) headers.append(h[i]!, h[i + 1]!);
    if (result.length >= 0) headers.set("content-length", String(result.length));
    return new Response(result.body, { status: result.status, statusText: result.statusText, headers });
  } catch (e) {
    // A response the runtime refuses to carry (a header value it rejects): the backend's fault.
    if (result.body instanceof ReadableStream) result.body.cancel().catch(() => {});
    ex.error = `unusable response: ${e instanceof Error ? e.message : String(e)}`;
    ex.status = 502;
    return errorResponse(502, "bad gateway");
  }
}

/**
 * `body` passed on as it is read, its bytes counted: `end(bytes)` runs once, when it ends, fails
 * or is cancelled (the client went away, a HEAD answer that sends no body).
 */
export function countedBody(body: ReadableStream<Uint8Array>, end: (bytes: number) => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let ended = false;
  const over = () => {
    if (ended) return;
    ended = true;
    end(bytes);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        let r: Awaited<ReturnType<typeof reader.read>>;
        try {
          r = await reader.read();
        } catch (e) {
          over();
          throw e;
        }
        if (r.done) {
          c.close();
          return over();
        }
        bytes += r.value.byteLength;
        c.enqueue(r.value);
      },
      cancel(reason) {
        over();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
