/**
 * Tunnels: an Upgrade (WebSocket, or a protocol a route lists) is routed like any request:
 * middleware, the strategy's pick, retries of a failed connect, the breaker. Once the backend
 * answers 101, both connections are a byte pipe with backpressure both ways: a side whose peer
 * does not take its bytes is paused until the peer drains. The request stays in flight (pool
 * and backend counts, graceful shutdown and reload wait for it) until the tunnel closes; then
 * its access line and SERVER span are written, with the bytes each way and who closed it.
 */
import type { UpstreamResponse } from "../upstream/client.ts";
import type { HeaderBlock } from "../http1/bytes.ts";
import { CLOSED_BY_PROXY, type RawExchange, type TunnelEnd } from "../runtime/types.ts";
import type { Exchange, RouteOptions } from "./exchange.ts";

/** A backend's 101, on its way to the client: what the gateway needs to open the tunnel. */
export interface Upgraded {
  /** The protocol the backend switched to (its Upgrade value). */
  readonly protocol: string;
  /** The 101's headers to pass on (Sec-WebSocket-Accept, …), hop-by-hop ones dropped. */
  readonly headers: readonly string[] | HeaderBlock;
  /** The backend's end. */
  readonly backend: TunnelEnd;
  /** Call once when the tunnel is over: releases the backend and ends the request. */
  done(bytesToClient: number, error?: string): void;
}

/**
 * The Upgrade value to ask the backend for: the protocols of `value` the route passes through
 * (`websocket`, and its `upgrade` list; a version after `/` is kept), or undefined when none is.
 */
export function allowedUpgrade(value: string, options: RouteOptions): string | undefined {
  let out: string | undefined;
  for (const part of value.split(",")) {
    const t = part.trim();
    const slash = t.indexOf("/");
    const name = (slash < 0 ? t : t.slice(0, slash)).toLowerCase();
    if (options.upgrades.has(name)) out = out === undefined ? t : `${out}, ${t}`;
  }
  return out;
}

/** The protocol a backend's 101 switched to, if the request asked for it (RFC 9110 §15.2.2); else undefined. */
export function switchedTo(asked: string, res: UpstreamResponse): string | undefined {
  const raw = res.rawHeaders;
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) if (raw[i] === "upgrade") value = raw[i + 1];
  if (value === undefined) return undefined;
  const got = value.trim().toLowerCase();
  for (const part of asked.split(",")) if (part.trim().toLowerCase() === got) return value.trim();
  return undefined;
}

/** Tunnels open now, checked for idleness by one interval (no timer per tunnel). */
const open = new Set<Tunnel>();
let sweep: ReturnType<typeof setInterval> | undefined;
let tickMs = 0;
/** After one end closed, the other gets this long to write out what is queued for it. */
const LINGER_MS = 10_000;

/** Check every quarter of the shortest idle timeout in use (10 ms to 1 s). */
function watch(idleMs: number): void {
  const tick = Math.min(1000, Math.max(10, Math.floor(idleMs / 4)));
  if (sweep !== undefined && tick >= tickMs) return;
  if (sweep !== undefined) clearInterval(sweep);
  tickMs = tick;
  sweep = setInterval(checkIdle, tick);
  (sweep as { unref?: () => void }).unref?.();
}

function checkIdle(): void {
  if (open.size === 0) {
    clearInterval(sweep);
    sweep = undefined;
    return;
  }
  const now = performance.now();
  for (const t of open) {
    if (t.active) {
      t.active = false;
      t.last = now;
    } else if (now - t.last >= t.idleMs) t.finish("idle");
  }
}

/** Tunnels open now (tests, the admin API's totals). */
export function openTunnels(): number {
  return open.size;
}

/** Answer the client's upgrade with the backend's 101 and pipe the two connections until one closes. */
export function openTunnel(raw: RawExchange, up: Upgraded, ex: Exchange, idleMs: number): void {
  const client = raw.switchProtocols!(up.protocol, up.headers);
  new Tunnel(client, up, ex, idleMs);
}

class Tunnel {
  bytesIn = 0;
  bytesOut = 0;
  /** Bytes moved since the last idle check. */
  active = false;
  last = performance.now();
  #finished = false;

  constructor(
    readonly client: TunnelEnd,
    readonly up: Upgraded,
    readonly ex: Exchange,
    readonly idleMs: number,
  ) {
    open.add(this);
    watch(idleMs);
    const backend = up.backend;
    client.start({
      data: (chunk) => {
        if (this.#finished) return;
        this.bytesIn += chunk.length;
        this.active = true;
        if (!backend.write(chunk)) client.pause();
      },
      drain: () => backend.resume(),
      close: (why) => this.finish(why === CLOSED_BY_PROXY ? "proxy" : "client"),
    });
    backend.start({
      data: (chunk) => {
        if (this.#finished) return;
        this.bytesOut += chunk.length;
        this.active = true;
        if (!client.write(chunk)) backend.pause();
      },
      drain: () => client.resume(),
      close: () => this.finish("backend"),
    });
  }

  /** Once: the side that closed first (or idle, or the proxy) is recorded; the other end gets what is queued for it, then closes. */
  finish(by: "client" | "backend" | "idle" | "proxy"): void {
    if (this.#finished) return;
    this.#finished = true;
    open.delete(this);
    const { client, up } = this;
    const backend = up.backend;
    if (by === "client" || by === "backend") {
      const other = by === "client" ? backend : client;
      (by === "client" ? client : backend).destroy();
      other.end();
      // A peer that never reads what is queued for it must not keep its connection forever.
      const t = setTimeout(() => other.destroy(), LINGER_MS);
      (t as { unref?: () => void }).unref?.();
    } else {
      client.destroy();
      backend.destroy();
    }
    this.ex.tunnel = { bytesIn: this.bytesIn, closedBy: by, upgrade: up.protocol };
    up.done(this.bytesOut);
  }
}
