/**
 * A backend connection after `101 Switching Protocols`: out of its pool for good, a tunnel's
 * byte pipe (core/proxy/tunnel.ts). The socket handlers (raw-response.ts) hand its events here
 * once `Conn.tunnel` is set.
 */
import type { TunnelEnd, TunnelEvents } from "./types.ts";
import type { Conn } from "./raw-conn.ts";

export class ConnTunnel implements TunnelEnd {
  events: TunnelEvents | undefined;
  /** Received before start() (bytes right behind the 101 head, or soon after). */
  early: Uint8Array[] | undefined;
  /** Why the backend's end closed before start(). */
  gone: string | undefined;
  #ending = false;
  #closed = false;
  readonly #drained = () => {
    if (this.#closed) return;
    if (this.#ending) return this.end();
    this.events?.drain();
  };

  constructor(readonly conn: Conn) {}

  start(events: TunnelEvents): void {
    this.events = events;
    const early = this.early;
    this.early = undefined;
    if (early !== undefined) { for (const b of early) events.data(b); }
    if (this.gone !== undefined) this.onClose(this.gone);
  }

  write(data: Uint8Array): boolean {
    if (this.#closed) return true; // gone: the tunnel closes on its close event
    if (this.conn.write(data)) return true;
    this.conn.onDrain = this.#drained;
    return false;
  }

  pause(): void {
    this.conn.socket?.pause();
  }

  resume(): void {
    this.conn.socket?.resume();
  }

  end(): void {
    if (this.#closed) return;
    if (this.conn.out !== undefined) {
      this.#ending = true;
      this.conn.onDrain = this.#drained;
      return;
    }
    this.#closed = true;
    this.conn.closed = true;
    this.conn.socket?.end();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.destroy();
  }

  /** Bytes from the backend (the socket's data handler). */
  onData(chunk: Uint8Array): void {
    if (this.events !== undefined) this.events.data(chunk);
    else (this.early ??= []).push(chunk);
  }

  /** The backend's FIN, a reset or an error. */
  onClose(why: string): void {
    // Taken first: destroying the socket may run its close handler (and this) again at once.
    const events = this.events;
    this.events = undefined;
    if (!this.#closed) {
      this.#closed = true;
      this.conn.destroy();
    }
    if (events === undefined) return void (this.gone ??= why);
    events.close(why);
  }
}
