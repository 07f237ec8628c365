// A client connection that leaves HTTP/1.1: the Upgrade a request asks for, the 101 answer, and the connection as a tunnel's byte pipe (or another protocol's, HTTP/2).
import { Buffer } from "node:buffer";
import { latin1, put, putBlock, type HeaderBlock } from "../http1/bytes.ts";
import type { RequestHead } from "../http1/request.ts";
import type { TcpSocket, TunnelEnd, TunnelEvents } from "../runtime/types.ts";

/**
 * Who reads and writes a client socket once its connection stopped speaking HTTP/1.1 (a tunnel
 * after 101, an HTTP/2 session): the port's socket events go to it instead of the connection.
 */
export interface SocketOwner {
  onData(chunk: Buffer): void;
  onDrain(): void;
  /** The client's FIN. */
  onEnd(): void;
  /** The socket closed or failed, or the proxy closes it (`error` is CLOSED_BY_PROXY): the owner calls closeTaken. */
  onClose(error?: string): void;
  /** The server is shutting down gracefully: an HTTP/2 session sends GOAWAY; a tunnel runs on until it ends or shutdown_timeout. */
  onShutdown?(): void;
}

/** What a tunnel needs of the client connection (ClientConn, connection.ts). */
export interface UpgradableConn {
  readonly closed: boolean;
  /** Bytes received after the request's head: the tunnel's first. */
  pending: Buffer | undefined;
  /** Hand the socket to `owner` (no more HTTP/1.1 on it); undefined when the connection is gone. */
  takeover(owner: SocketOwner): TcpSocket<unknown> | undefined;
  /** The owner is done with the socket: close it (after a FIN when `graceful`) and forget the connection. */
  closeTaken(graceful: boolean): void;
}

/**
 * The protocols a request asks to switch to: its `Upgrade` value when `Connection` lists
 * `upgrade` (RFC 9110 §7.8), HTTP/1.1 only; else undefined. A `Connection` that names a header
 * makes the head keep no forwarded lines (`runs`), so every other request returns at once.
 */
export function upgradeOf(head: RequestHead): string | undefined {
  if (head.runs !== undefined || head.minor !== 1) return undefined;
  const connection = head.header("connection");
  if (connection === null || !hasToken(connection, "upgrade")) return undefined;
  const upgrade = head.header("upgrade");
  return upgrade === null || upgrade.trim() === "" ? undefined : upgrade.trim();
}

function hasToken(list: string, token: string): boolean {
  for (const t of list.split(",")) if (t.trim().toLowerCase() === token) return true;
  return false;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Whether a connection's first bytes are the HTTP/2 client preface (RFC 9113 §3.4): 2 yes, 1 not
 * yet known (a prefix of it so far), 0 no. A listener with `h2c` hands such a connection to HTTP/2.
 */
export function prefaceState(buf: Uint8Array): 0 | 1 | 2 {
  const n = Math.min(buf.length, PREFACE.length);
  for (let i = 0; i < n; i++) if (buf[i] !== PREFACE[i]) return 0;
  return n === PREFACE.length ? 2 : 1;
}

const STATUS_101 = Buffer.from("HTTP/1.1 101 Switching Protocols\r\n", "latin1");
const CONNECTION_UPGRADE = Buffer.from("connection: upgrade\r\nupgrade: ", "latin1");

/** The 101 head: the backend's headers (hop-by-hop ones already dropped), then Connection and Upgrade. */
function head101(protocol: string, headers: readonly string[] | HeaderBlock): Buffer {
  let size = STATUS_101.length + CONNECTION_UPGRADE.length + protocol.length + 8;
  const block = Array.isArray(headers) ? undefined : (headers as HeaderBlock);
  const list = block === undefined ? (headers as readonly string[]) : undefined;
  if (block !== undefined) size += block.size;
  else for (const h of list!) size += h.length + 2;
  const buf = Buffer.allocUnsafe(size);
  let p = put(buf, 0, STATUS_101);
  if (block !== undefined) p = putBlock(buf, p, block);
  else {
    for (let i = 0; i < list!.length; i += 2) {
      p = latin1(buf, p, list![i]!);
      buf[p++] = 58;
      buf[p++] = 32;
      p = latin1(buf, p, list![i + 1]!);
      buf[p++] = 13;
      buf[p++] = 10;
    }
  }
  p = put(buf, p, CONNECTION_UPGRADE);
  p = latin1(buf, p, protocol);
  buf[p++] = 13;
  buf[p++] = 10;
  buf[p++] = 13;
  buf[p++] = 10;
  return buf.subarray(0, p);
}

/**
 * Answer 101 on `conn` and make it the client's end of a tunnel. Bytes the client sent after
 * its request head are delivered first (a client may send its first frame right behind it).
 */
export function switchProtocols(conn: UpgradableConn, protocol: string, headers: readonly string[] | HeaderBlock): TunnelEnd {
  const tunnel = new ClientTunnel(conn);
  const early = conn.pending;
  conn.pending = undefined;
  const socket = conn.closed ? undefined : conn.takeover(tunnel);
  if (socket === undefined) {
    tunnel.gone = "client closed the connection";
    return tunnel;
  }
  tunnel.socket = socket;
  if (early !== undefined && early.length > 0) tunnel.early = [early];
  tunnel.write(head101(protocol, headers));
  return tunnel;
}

/** The client's end of a tunnel: the socket with a queue for what the kernel did not take. */
class ClientTunnel implements TunnelEnd, SocketOwner {
  socket: TcpSocket<unknown> | undefined;
  events: TunnelEvents | undefined;
  /** Received before start(). */
  early: Buffer[] | undefined;
  /** Why the client end closed before start() (delivered by start). */
  gone: string | undefined;
  #out: Uint8Array[] | undefined;
  #ending = false;
  #closed = false;
  constructor(readonly conn: UpgradableConn) {}

  start(events: TunnelEvents): void {
    this.events = events;
    const early = this.early;
    this.early = undefined;
    if (early !== undefined) { for (const b of early) events.data(b); }
    if (this.gone !== undefined) this.#report(this.gone);
  }

  write(data: Uint8Array): boolean {
    const socket = this.socket;
    if (this.#closed || socket === undefined) return true; // the peer is gone: the tunnel closes on its close event
    if (this.#out !== undefined) {
      this.#out.push(data);
      return false;
    }
    const n = socket.write(data);
    if (n === data.length) return true;
    // The unwritten part is a view: the caller's buffer is not reused (socket reads are fresh).
    this.#out = [n > 0 ? data.subarray(n) : data];
    return false;
  }

  pause(): void {
    this.socket?.pause();
  }

  resume(): void {
    this.socket?.resume();
  }

  end(): void {
    if (this.#closed) return;
    if (this.#out !== undefined) return void (this.#ending = true);
    this.#closed = true;
    this.conn.closeTaken(true);
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out = undefined;
    this.conn.closeTaken(false);
  }

  // ---- the socket's events (SocketOwner) ----

  onData(chunk: Buffer): void {
    if (this.events !== undefined) this.events.data(chunk);
    else (this.early ??= []).push(chunk);
  }

  onDrain(): void {
    const out = this.#out;
    const socket = this.socket;
    if (out === undefined || socket === undefined) return;
    while (out.length > 0) {
      const d = out[0]!;
      const n = socket.write(d);
      if (n < d.length) {
        out[0] = n > 0 ? d.subarray(n) : d;
        return;
      }
      out.shift();
    }
    this.#out = undefined;
    if (this.#ending) return this.end();
    this.events?.drain();
  }

  onEnd(): void {
    this.#report("client closed the connection");
  }

  onClose(error?: string): void {
    this.#report(error ?? "client closed the connection");
  }

  #report(why: string): void {
    // Taken first: closing the socket may run its close handler (and this) again at once.
    const events = this.events;
    this.events = undefined;
    if (!this.#closed) {
      this.#closed = true;
      this.#out = undefined;
      this.conn.closeTaken(false);
    }
    if (events === undefined) return void (this.gone ??= why);
    events.close(why);
  }
}
