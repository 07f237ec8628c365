/** An HTTP/2 stream opened by an extended CONNECT (RFC 8441) as a tunnel's client end: a WebSocket over HTTP/2. */
import type { Buffer } from "node:buffer";
import type { ServerHttp2Stream } from "node:http2";
import type { TunnelEnd, TunnelEvents } from "../runtime/types.ts";

export class StreamTunnel implements TunnelEnd {
  #events: TunnelEvents | undefined;
  #early: Buffer[] | undefined;
  #gone: string | undefined;
  #closed = false;

  constructor(readonly stream: ServerHttp2Stream) {
    stream.on("data", (chunk: Buffer) => {
      if (this.#events !== undefined) this.#events.data(chunk);
      else (this.#early ??= []).push(chunk);
    });
    stream.on("drain", () => this.#events?.drain());
    stream.once("end", () => this.#report("client closed the stream"));
    stream.once("close", () => this.#report("client closed the stream"));
    stream.on("error", () => {});
  }

  start(events: TunnelEvents): void {
    this.#events = events;
    const early = this.#early;
    this.#early = undefined;
    if (early !== undefined) { for (const b of early) events.data(b); }
    if (this.#gone !== undefined) this.#report(this.#gone);
  }

  write(data: Uint8Array): boolean {
    if (this.#closed || this.stream.destroyed) return true;
    return this.stream.write(data);
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
    if (!this.stream.destroyed) this.stream.end();
  }

  destroy(): void {
    if (this.#closed && this.stream.destroyed) return;
    this.#closed = true;
    if (!this.stream.destroyed) this.stream.close(8 /* CANCEL */);
  }

  #report(why: string): void {
    const events = this.#events;
    this.#events = undefined;
    if (events === undefined) return void (this.#gone ??= why);
    events.close(why);
  }
}
