/**
 * The one small interface between Fulcrum and the JavaScript runtime. Only files in this folder
 * touch `Bun.*` or `Deno.*`; `main.ts` picks the implementation once.
 */

import type { AbortLike, TunnelEnd, UpstreamClient, UpstreamTls } from "../upstream/client.ts";

export type { TunnelEnd, TunnelEvents } from "../upstream/client.ts";

/** The `close` reason of a tunnel end the proxy itself closed (shutdown_timeout reached). */
export const CLOSED_BY_PROXY = "closed by the proxy";
import type { BodyInRead, HeaderBlock } from "../http1/bytes.ts";

/** Handler for one request; `clientIp` is the peer address of the TCP connection. */
export type FetchHandler = (request: Request, clientIp: string) => Response | Promise<Response>;

/**
 * A request read by a runtime's own HTTP/1.1 listener (`ServeOptions.raw`): the parsed head, the
 * body on demand and two ways to answer, with no `Request`/`Response` objects on the way unless
 * asked for. Exactly one of {@link respond} / {@link respondWith} is called, once.
 */
export interface RawExchange {
  readonly method: string;
  /** Origin-form path and query (`/p?q`), or `*`. */
  readonly target: string;
  /** The request line's HTTP/1.x minor version (0 or 1), when the listener parsed it. */
  readonly minor?: number;
  /** The Host header (or an absolute-form target's authority); "" when absent (HTTP/1.0). */
  readonly host: string;
  /** name, value, … with names lower-cased, in the order received. */
  readonly rawHeaders: readonly string[];
  /** One header's value (`name` lower-case; several lines joined with ", "), null when absent; may avoid making {@link rawHeaders}. */
  header(name: string): string | null;
  /**
   * The header lines to forward as they came, when the listener kept them as bytes: all but the
   * hop-by-hop ones, Host, Content-Length and X-Forwarded-*; undefined when strings are needed
   * (Connection naming headers, repeated Cookie). See headers.ts upstreamHeadersBlock.
   */
  readonly forward?: ForwardLines;
  readonly clientIp: string;
  /** Declared body length: 0 for none, -1 when chunked (unknown until it ends). */
  readonly bodyLength: number;
  /** The request body, or null when there is none. */
  readonly body: ReadableStream<Uint8Array> | null;
  /**
   * The whole body as bytes if it has all arrived and {@link body} was not read yet (then `body`
   * is null from now on); undefined otherwise.
   */
  wholeBody?(): Uint8Array | undefined;
  /** {@link wholeBody} for a body that came whole in the read its head came in, left there (no view of it made); else undefined. */
  wholeBodyInRead?(): BodyInRead | undefined;
  /** Aborted when the client goes away before its response is complete. */
  readonly signal: AbortLike;
  /** Why the body failed on the client's side, as the status to answer (413 too large, 400 bad framing); 0 if it did not. */
  bodyFault(): number;
  /**
   * Answer. `headers` (strings, or a backend's header lines as bytes) are free of hop-by-hop and
   * framing headers (the listener writes Content-Length or chunked framing itself); `length` is the body's length when known, else -1
   * (for a HEAD request, the length the body would have).
   */
  respond(
    status: number,
    statusText: string,
    headers: readonly string[] | HeaderBlock,
    body: Uint8Array | ReadableStream<Uint8Array> | null,
    length: number,
  ): void;
  /**
   * {@link respond} with a whole body that is still in the read it came in (BodyInRead): no view
   * of it is made. Where absent, `respond` with the body as bytes.
   */
  respondInRead?(status: number, statusText: string, headers: readonly string[] | HeaderBlock, body: BodyInRead): void;
  /** Answer with a web `Response` (routes with middleware, error answers). */
  respondWith(response: Response): void;
  /** The same request as a web `Request` (built once; its body is {@link body}). */
  toRequest(): Request;
  /**
   * The protocols the client asks to switch to (`Upgrade`, listed in `Connection`), lower-cased
   * as sent ("websocket"); undefined when it asks for none. Where a listener cannot hand its
   * connection over, undefined too (the Upgrade header is then dropped as hop-by-hop).
   */
  readonly upgrade?: string | undefined;
  /** "2" from the HTTP/2 front; undefined from the HTTP/1.x listener (see {@link minor}). */
  readonly httpVersion?: string;
  /**
   * Answer 101 Switching Protocols with `headers` (Connection and Upgrade written by the
   * listener from `protocol`), and turn the connection into a byte pipe: the client's end of a
   * tunnel (core/proxy/tunnel.ts). Bytes the client sent after its request come first.
   */
  switchProtocols?(protocol: string, headers: readonly string[] | HeaderBlock): TunnelEnd;
  /** How the client reached us: "https" on a TLS listener; absent means "http". */
  readonly scheme?: "http" | "https";
  /** The TLS version and cipher of the connection (TLS listeners only), read when asked. */
  tlsInfo?(): TlsInfo | undefined;
}

/** A TLS connection's negotiated version and cipher, as OpenSSL names them (`TLSv1.3`, `TLS_AES_128_GCM_SHA256`). */
export interface TlsInfo {
  readonly protocol: string;
  readonly cipher: string;
}

/** A certificate as a TLS listener serves it (PEM). Replaced, not mutated, when it changes: runtimes cache per object. */
export interface TlsCertificate {
  readonly cert: string;
  readonly key: string;
}

/** What a TLS listener serves (core/tls/ builds it; the runtime binds it to its sockets). */
export interface ServeTls {
  /** The certificate for a ClientHello naming `servername`: a match, else the default; an Error refuses the handshake. */
  select(servername: string): TlsCertificate | Error;
  /** The certificate for a ClientHello without SNI; undefined while there is none (such handshakes fail). */
  defaultCertificate(): TlsCertificate | undefined;
  /** Subscribe to changes of the default certificate (rotation, ACME). */
  onDefaultChange(listener: () => void): void;
  readonly minVersion: "1.2" | "1.3";
  /** ALPN protocols offered, most preferred first. */
  readonly alpn: readonly string[];
  /** PEM CA that client certificates must chain to (mTLS); undefined: none asked for. */
  readonly clientCa: string | undefined;
  /** OpenSSL cipher list for TLS 1.2. */
  readonly ciphers: string;
  /** A client that has not finished its handshake this long after connecting is closed. */
  readonly handshakeTimeoutMs: number;
  /** A handshake succeeded, failed (`error`), or timed out; for metrics and debug logs. */
  handshake(ok: boolean, error: Error | "timeout" | undefined, clientIp: string): void;
}

export interface ServeOptions {
  hostname: string;
  /** 0 picks a free port; read it back from {@link Listener.port}. */
  port: number;
  fetch: FetchHandler;
  /**
   * Where the runtime has its own HTTP/1.1 listener (Bun), requests go here instead of
   * {@link fetch}. Runtimes without one ignore it.
   */
  raw?: (exchange: RawExchange) => void;
  /** Largest request body accepted, in bytes. */
  maxRequestBodySize: number;
  /** Seconds an idle client connection is kept open. */
  idleTimeoutSeconds: number;
  /** Let several processes share the port (SO_REUSEPORT). */
  reusePort?: boolean;
  /** Serve TLS on this port (raw listener only). */
  tls?: ServeTls;
  /**
   * Also serve HTTP/2 with prior knowledge (h2c) on this cleartext port: a connection whose first
   * bytes are the HTTP/2 preface. Runtimes without their own listener ignore it.
   */
  h2c?: boolean;
  /** The port's HTTP/2 settings (h2c, and ALPN "h2" on TLS). */
  http2?: Http2Settings;
  /** Told of what an operator should see: an HTTP/2 connection closed for abuse. */
  onWarning?: (message: string, properties: Record<string, unknown>) => void;
  /**
   * Told of an error thrown inside the listener or the request handler (a bug: the request got a
   * 500, or its connection was closed). Runtimes without their own listener ignore it.
   */
  onError?: (e: unknown) => void;
}

/** A listener's HTTP/2 settings, sent to clients in SETTINGS (config `listen.http2`). */
export interface Http2Settings {
  /** SETTINGS_MAX_CONCURRENT_STREAMS. @default 100 */
  maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE: how much of a request body a client may send ahead, per stream. @default 1 MiB */
  initialWindowSize: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE; a larger request header list gets 431. @default 64 KiB */
  maxHeaderListSize: number;
}

export const HTTP2_DEFAULTS: Readonly<Http2Settings> = {
  maxConcurrentStreams: 100,
  initialWindowSize: 1024 * 1024,
  maxHeaderListSize: 64 * 1024,
};

export interface Listener {
  readonly hostname: string;
  readonly port: number;
  /** Stop accepting connections. In-flight requests continue; idle keep-alive connections close. */
  close(): Promise<void>;
  /** Close every connection at once. */
  forceClose(): Promise<void>;
}

/** Something that writes itself into a writer's buffer (an access line, without a string first). */
export interface ByteSource {
  /** Writes from `buf[at]` on, at most the `maxBytes` promised to {@link Writer.writeBytes}; returns the end. */
  fill(buf: Uint8Array, at: number): number;
}

/** A buffered line writer (stdout, stderr or a file) for logs. Each call is whole lines. */
export interface Writer {
  write(text: string): void;
  /** Lets `source` write at most `maxBytes` bytes straight into the buffer. */
  writeBytes(maxBytes: number, source: ByteSource): void;
  flush(): void;
  close(): Promise<void>;
  /**
   * A file writer: write what is gathered to the file, then open the path again (logrotate moved
   * the file away: lines from now on go to a new file at the path). Whole lines only, none lost.
   */
  reopen?(): void;
}

export interface WriterOptions {
  /**
   * Largest write handed to the file, in whole lines (a longer line goes alone). 4096 (PIPE_BUF)
   * when several processes share a pipe: the kernel never interleaves writes that small.
   * @default 65536
   */
  chunk?: number;
}

/** A plugin module as imported: its namespace and the source files it was built from. */
export interface ImportedPlugin {
  readonly module: Record<string, unknown>;
  /** Absolute paths of the plugin file and every local file it imports (to watch for changes). */
  readonly files: readonly string[];
}

/** Why a plugin file could not be imported. `message` says where (`file:line:col` for syntax). */
export class PluginImportError extends Error {
  constructor(readonly reason: "not-found" | "syntax" | "load", message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PluginImportError";
  }
}

export interface Runtime {
  readonly name: "bun" | "deno";
  readonly version: string;
  serve(options: ServeOptions): Promise<Listener>;
  /** Subscribe to a POSIX signal; returns the function that unsubscribes. */
  onSignal(signal: "SIGTERM" | "SIGINT" | "SIGHUP" | "SIGUSR1", handler: () => void): () => void;
  readTextFile(path: string): Promise<string>;
  env(name: string): string | undefined;
  /** Process arguments after the script (or binary) name. */
  args(): string[];
  cwd(): string;
  openWriter(target: "stdout" | "stderr" | { path: string }, options?: WriterOptions): Writer;
  exit(code: number): never;
  /**
   * Import a plugin file (absolute path), with `"fulcrum"` resolving to the host's module.
   * `fresh` re-reads the file and every local file it imports (for reload); an unchanged plugin
   * comes back as the same module object. Throws {@link PluginImportError}.
   */
  importPlugin(absPath: string, options: { fresh: boolean }): Promise<ImportedPlugin>;
  /** Send a signal to another process (`fulcrum reload`). */
  kill(pid: number, signal: "SIGHUP" | "SIGTERM"): void;
  /** This runtime's own upstream HTTP client; node:http (core/upstream/node.ts) when absent. */
  readonly upstreamClient?: UpstreamClient;
  /** Worker processes (`workers: N`); undefined where the runtime has no IPC for it (Deno). */
  readonly processes?: Processes;
}

// ---- Worker processes (core/cluster/) ------------------------------------------------------

/** A worker: this same program run again, with a message channel to it. */
export interface WorkerProcess {
  readonly pid: number;
  /** Send a JSON-serialisable message; a no-op once the worker is gone. */
  send(message: unknown): void;
  kill(signal: "SIGTERM" | "SIGKILL"): void;
  /** Resolves when the worker has exited, with its exit code or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
}

/** A worker's channel to the primary that spawned it. */
export interface ParentChannel {
  send(message: unknown): void;
  onMessage(handler: (message: unknown) => void): void;
  /** The primary is gone (exited or killed): the channel closed. Called soon after registering if it already was. */
  onDisconnect(handler: () => void): void;
}

export interface Processes {
  /**
   * Start this program again with `args` (the same executable: the compiled binary, or the
   * runtime with the same entry script), `env` added to this process's environment, stdout and
   * stderr shared with this process, and an IPC channel.
   */
  spawnSelf(args: readonly string[], env: Record<string, string>, onMessage: (message: unknown) => void): WorkerProcess;
  /** The channel to the process that spawned this one, if it was spawned by {@link spawnSelf}. */
  parent(): ParentChannel | undefined;
}

/** A request's header lines kept as bytes (RawExchange.forward), and what the proxy writes itself from them. */
export interface ForwardLines {
  readonly block: HeaderBlock;
  /** The Host to forward: the Host line's value, or an absolute-form target's authority ("" when neither). */
  readonly hostLine: string;
  /** The X-Forwarded-For values received, joined with ", " ("" when none). */
  readonly forwardedFor: string;
  /** Content-Length, -1 when absent (not among the lines). */
  readonly contentLength: number;
  /** A trace context header is among the lines: tracing, which writes its own, needs the strings. */
  readonly traceContext: boolean;
}

// ---- Raw TCP (our HTTP/1.1 listener and upstream client) --------------------------------------

/**
 * A TCP connection as the runtime hands it to core/listener/ and core/upstream/ (the shape of
 * Bun's `Socket`, so the Bun runtime passes its sockets through without a wrapper). `data` is the
 * connection's state object, set by the code that owns the connection.
 */
export interface TcpSocket<T> {
  data: T;
  readonly remoteAddress?: string;
  /** Write what the kernel takes now; returns the bytes written (the rest waits for `drain`). */
  write(data: Uint8Array | string, byteOffset?: number, byteLength?: number): number;
  /** Flush buffered writes, then close. */
  end(): void;
  /** Close now, discarding what is unwritten. */
  terminate(): void;
  flush(): void;
  /** Call `timeout` after this many idle seconds (0: never). */
  timeout(seconds: number): void;
  pause(): void;
  resume(): void;
  setNoDelay?(noDelay?: boolean): boolean;
  /** TLS client sockets: whether the peer's certificate verified, and why not. */
  readonly authorized?: boolean;
  getAuthorizationError?(): Error | null;
  /** TLS sockets: the negotiated version (`TLSv1.3`) and cipher. */
  getTLSVersion?(): string | null;
  getCipher?(): { name: string; standardName?: string } | null;
}

/** A TCP connection's events, as the runtime delivers them. */
export interface TcpHandlers<T> {
  open?(socket: TcpSocket<T>): void;
  data?(socket: TcpSocket<T>, data: Buffer): void;
  drain?(socket: TcpSocket<T>): void;
  close?(socket: TcpSocket<T>, error?: Error): void;
  end?(socket: TcpSocket<T>): void;
  error?(socket: TcpSocket<T>, error: Error): void;
  timeout?(socket: TcpSocket<T>): void;
  connectError?(socket: TcpSocket<T>, error: Error): void;
  /** TLS: the handshake finished; `success` false with the reason in `error`. */
  handshake?(socket: TcpSocket<T>, success: boolean, error: Error | null): void;
}

/**
 * Open a TCP (or TLS, for `https:` backends) connection to a backend; `data` becomes `socket.data`.
 * `tls`: true verifies against the system's CAs and `hostname`; settings replace that.
 */
export type TcpConnect = <T>(
  options: { hostname: string; port: number; tls: boolean | UpstreamTls; handlers: TcpHandlers<T>; data: T },
) => Promise<TcpSocket<T>>;
