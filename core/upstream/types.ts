// The upstream client's contract, apart from any client, so that every file here can import it without a cycle.
import type { BodyInRead, HeaderBlock } from "../http1/bytes.ts";

export type UpstreamErrorKind = "connect" | "reset" | "timeout" | "aborted";

/** An attempt that got no response. `kind` decides the status: connect/reset → 502, timeout → 504. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    /** False when the request provably never reached the backend (connect failure). */
    readonly maybeSent: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "UpstreamError";
  }
}

export interface UpstreamTarget {
  readonly protocol: "http:" | "https:";
  readonly hostname: string;
  readonly port: number;
  /** Path prefix from the backend URL, without a trailing slash ("" for none). */
  readonly basePath: string;
  /** For `https:`: how the backend's certificate is verified; undefined: system CAs and the URL's host. */
  readonly tls?: UpstreamTls | undefined;
}

/** TLS to a backend (`pools.<name>.tls`, read by core/tls/backend.ts). */
export interface UpstreamTls {
  /** false: any certificate is accepted (insecure_skip_verify). */
  readonly verify: boolean;
  /** PEM CAs trusted instead of the system's. */
  readonly ca?: string;
  /** SNI, and the name the certificate must carry; default the URL's host. */
  readonly serverName?: string;
  /** A client certificate and key (PEM), for backends that require mTLS. */
  readonly cert?: string;
  readonly key?: string;
}

/**
 * The part of `AbortSignal` the proxy and the upstream clients use. An `AbortSignal` is one; Bun's
 * raw listener implements it without an EventTarget (one fewer object graph per request).
 */
export interface AbortLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: EventListenerObject | (() => void), options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: EventListenerObject | (() => void)): void;
}

export interface UpstreamRequest {
  method: string;
  /** Path and query, starting with `/`. */
  path: string;
  headers: Record<string, string>;
  /** More header lines, as bytes (the client's, see RawExchange.forward), sent after `headers`. */
  block?: HeaderBlock;
  /** A stream is sent once the connection is up, so a connect failure leaves it unread (retryable). */
  body: ReadableStream<Uint8Array> | Uint8Array | null;
  /** The body as it lies in the client's read, when it came whole with its head: a client that can send it from there reads this, not `body`. */
  readonly bodyInRead?: BodyInRead | undefined;
  /** Aborted when the client goes away. */
  signal: AbortLike;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /**
   * Called once when the response body has been fully sent, failed, or was cancelled by the
   * client, with the bytes passed and an error message if it did not complete.
   */
  onBodyEnd: (bytes: number, error?: string) => void;
  /**
   * Ask the backend to switch to this protocol (the `Upgrade` value to send, with `Connection:
   * upgrade`), on a new connection that never returns to the pool. A 101 answer comes with
   * {@link UpstreamResponse.tunnel}; any other answer is an ordinary response.
   */
  upgrade?: string;
}

/** What one end of a tunnel reports (core/proxy/tunnel.ts sets these). */
export interface TunnelEvents {
  data(chunk: Uint8Array): void;
  /** What was queued has been written: reading from the other end may resume. */
  drain(): void;
  /** The peer finished (FIN), reset or failed: nothing more comes from this end. Once. `error` is CLOSED_BY_PROXY (core/runtime/types.ts) when the proxy closed it. */
  close(error?: string): void;
}

/**
 * One end of a byte tunnel (a WebSocket after 101): the client's connection, or the backend's
 * connection taken out of its pool (defined here, where both the upstream client and the runtime
 * boundary, core/runtime/types.ts, can name it without an import cycle). Writes never block:
 * what the kernel does not take is queued and `write` returns false until `drain`.
 */
export interface TunnelEnd {
  /** Start delivering events; bytes already received are delivered first. */
  start(events: TunnelEvents): void;
  /** false: the rest is queued; stop reading the other end until `drain`. */
  write(data: Uint8Array): boolean;
  pause(): void;
  resume(): void;
  /** Close once what is queued has been written. */
  end(): void;
  /** Close now. */
  destroy(): void;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly statusText: string;
  /** name, value, … with names lower-cased (may be made on first read). */
  readonly rawHeaders: string[];
  /**
   * The header lines to forward as the backend sent them, hop-by-hop ones and Content-Length left
   * out, when the client kept them as bytes (Bun's); then `contentLength` is the declared length.
   */
  readonly block?: HeaderBlock;
  /** Content-Length (-1 when absent); given with `block`. */
  readonly contentLength?: number;
  /**
   * The body as a web stream; or as bytes when it was small and already read whole (then
   * `onBodyEnd` has been called); or null for HEAD, 204 and 304 (then `onBodyEnd` is not called).
   */
  body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null;
  /**
   * The whole body as it lies in the read it came in (the raw client, for a body it read whole in
   * one read): forwarded from there with no view of it made; `body` makes the view when read.
   */
  readonly inRead?: BodyInRead;
  /** A 101 to a request with `upgrade`: the backend's connection as a tunnel end (`body` is null). */
  readonly tunnel?: TunnelEnd;
}

export interface PoolOptions {
  maxIdle: number;
  idleTimeoutMs: number;
}

/** Keep-alive connection pool for one backend, and the way requests go through it. */
export interface UpstreamAgent {
  send(req: UpstreamRequest): Promise<UpstreamResponse>;
  /** Close idle connections now; in-flight ones close when done. */
  destroy(): void;
}

/** Makes the pool of one backend. A runtime may bring its own (see `Runtime.upstreamClient`). */
export type UpstreamClient = (target: UpstreamTarget, options: PoolOptions) => UpstreamAgent;
