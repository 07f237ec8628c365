/**
 * Cookie stickiness for a pool (`pools.<name>.sticky`): the first response sets a cookie naming
 * its backend by an opaque value, later requests carrying it go to that backend while it is
 * available. The value is a hash of the optional secret, the pool's name and the backend's id, so
 * every worker process and every instance with the same config computes the same value, and it
 * never shows the backend's address. A value that names no backend of the pool (forged, stale, or
 * from another pool) is ignored.
 */
import { hash64Hex } from "../lib/hash.ts";

export interface StickyConfig {
  readonly cookie: string;
  /** Max-Age in ms; 0 for a session cookie. */
  readonly ttl: number;
  readonly secure: boolean;
  readonly http_only: boolean;
  readonly same_site: "lax" | "strict" | "none";
  readonly path: string;
  readonly secret?: string | undefined;
}

/** The opaque cookie value for `id` in pool `pool`. */
export function stickyValue(secret: string, pool: string, id: string): string {
  return hash64Hex(`${secret}\u0000${pool}\u0000${id}`);
}

/** Lookup tables built once per pool (its backends are fixed for its lifetime). */
export class Sticky<B extends { readonly id: string }> {
  readonly #byValue = new Map<string, B>();
  readonly #header = new Map<B, string>();
  readonly name: string;

  constructor(readonly config: StickyConfig, pool: string, backends: readonly B[]) {
    this.name = config.cookie;
    const attrs = `; Path=${config.path}` +
      (config.ttl > 0 ? `; Max-Age=${Math.ceil(config.ttl / 1000)}` : "") +
      (config.http_only ? "; HttpOnly" : "") +
      (config.secure ? "; Secure" : "") +
      `; SameSite=${config.same_site[0]!.toUpperCase()}${config.same_site.slice(1)}`;
    for (const b of backends) {
      const value = stickyValue(config.secret ?? "", pool, b.id);
      this.#byValue.set(value, b);
      this.#header.set(b, `${config.cookie}=${value}${attrs}`);
    }
  }

  /** The backend a `Cookie` header's sticky cookie names, if any. */
  find(cookieHeader: string | null | undefined): B | undefined {
    if (!cookieHeader) return undefined;
    const value = cookieValue(cookieHeader, this.name);
    return value === undefined ? undefined : this.#byValue.get(value);
  }

  /** The `Set-Cookie` value that sends later requests to `b`. */
  setCookie(b: B): string {
    return this.#header.get(b)!;
  }

  /** The cookie value naming `b` (tests, admin). */
  valueOf(b: B): string | undefined {
    const h = this.#header.get(b);
    return h === undefined ? undefined : h.slice(this.name.length + 1, h.indexOf(";"));
  }
}

/**
 * One cookie's value from a `Cookie` header (`a=1; name=v; b=2`), or undefined. `,` also
 * separates, since cookie headers sent as several fields may have been joined with commas.
 */
export function cookieValue(header: string, name: string): string | undefined {
  let i = 0;
  const n = header.length;
  while (i < n) {
    while (i < n && (header.charCodeAt(i) === 32 || header.charCodeAt(i) === 59 || header.charCodeAt(i) === 44)) i++;
    let end = i;
    while (end < n && header.charCodeAt(end) !== 59 && header.charCodeAt(end) !== 44) end++;
    if (end - i > name.length && header.charCodeAt(i + name.length) === 61 && header.startsWith(name, i)) {
      let v = header.slice(i + name.length + 1, end).trim();
      if (v.length >= 2 && v.charCodeAt(0) === 34 && v.charCodeAt(v.length - 1) === 34) v = v.slice(1, -1);
      return v;
    }
    i = end;
  }
  return undefined;
}
