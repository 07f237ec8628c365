/** An HTTP/2 stream opened by an extended CONNECT (RFC 8441) as a tunnel's client end: a WebSocket over HTTP/2. */
import type { Buffer } from "node:buffer";
import type { TunnelEnd, TunnelEvents } from "../runtime/types.ts";
import { CANCEL } from "./frames.ts";
import type { H2Stream } from "./stream.ts";

export class H2Tunnel implements TunnelEnd {
  #events: TunnelEvents | undefined;
  #early: Buffer[] | undefined;
  #gone: string | undefined;
  #closed = false;

  constructor(readonly stream: H2Stream) {
    stream.read((chunk) => {
      if (this.#events !== undefined) this.#events.data(chunk);
      else (this.#early ??= []).push(chunk);
    }, () => this.#report("client closed the stream"));
    stream.onClose = () => this.#report("client closed the stream");
    stream.onDrain = () => this.#events?.drain();
  }

  start(events: TunnelEvents): void {
    this.#events = events;
    const early = this.#early;
    this.#early = undefined;
    if (early !== undefined) { for (const b of early) events.data(b); }
    if (this.#gone !== undefined) this.#report(this.#gone);
  }

  write(data: Uint8Array): boolean {
    if (this.#closed || this.stream.closed) return true;
    return this.stream.write(data, false);
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  end(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.stream.end();
  }

  destroy(): void {
    if (this.#closed && this.stream.closed) return;
    this.#closed = true;
    this.stream.reset(CANCEL);
  }

  #report(why: string): void {
    const events = this.#events;
    this.#events = undefined;
    if (events === undefined) return void (this.#gone ??= why);
    events.close(why);
  }
}
