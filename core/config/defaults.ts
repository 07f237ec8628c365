/**
 * Settings' values and shapes the request path reads without the schema (no zod here: a worker
 * process and the request path do not load it).
 */

/** timeouts.tunnel_idle of a route: 1h, like HAProxy's `timeout tunnel` set for WebSocket. */
export const TUNNEL_IDLE_DEFAULT = 3_600_000;

/** Every listener of a config's `listen`, the first one first. */
export function listenersOf<L extends object>(listen: L & { also?: readonly L[] | undefined }): L[] {
  return [listen, ...(listen.also ?? [])];
}

/** `/…/` with at least one character between the slashes: a match value that is a regular expression. */
export function isSlashed(v: string): boolean {
  return v.length > 2 && v.startsWith("/") && v.endsWith("/");
}
