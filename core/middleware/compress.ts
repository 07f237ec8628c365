/**
 * The built-in `compress` middleware: encodes responses with zstd, brotli or gzip as the client's
 * Accept-Encoding allows. Registered like any user middleware plugin (main.ts), configured per
 * route:
 *
 *   middleware:
 *     - compress: { types: [text/*, application/json], min_size: 1kib, encodings: [zstd, br, gzip] }
 *
 * What it leaves alone, as nginx's gzip module and Caddy's encode do: a response that already
 * has a Content-Encoding, `Cache-Control: no-transform`, 1xx/204/206/304, HEAD, a type not in
 * `types`, a body under `min_size` (known from Content-Length, or read up to `min_size` when
 * there is none), and a client that accepts none of `encodings`. A compressed response loses its
 * Content-Length (it streams chunked) and Accept-Ranges, its ETag becomes weak (`W/`), and
 * `Vary: Accept-Encoding` is merged into any Vary it has (also when this client got it plain).
 */
import type { Middleware, MiddlewarePlugin, PluginApi } from "../plugins/api.ts";
import { parseSize } from "../config/units.ts";
import { available, DEFAULT_LEVELS, type Encoding, encodeStream, ENCODINGS, LEVEL_RANGE } from "./encoders.ts";

export interface CompressOptions {
  /**
   * Media types to compress: exact (`application/json`) or a whole top-level type (`text/*`).
   * A wildcard never matches `text/event-stream` (name it to compress server-sent events).
   * @default [text/*, application/json, application/javascript, application/xml, image/svg+xml]
   */
  types?: string[];
  /** Smallest body compressed, as a size (`1kib`, `512`). @default 1kib */
  min_size?: string | number;
  /** Encodings offered, in the server's order of preference. @default [zstd, br, gzip] */
  encodings?: Encoding[];
  /** Level per encoding. @default { gzip: 6, br: 4, zstd: 3, deflate: 6 } */
  level?: Partial<Record<Encoding, number>>;
}

const KNOWN = ["types", "min_size", "encodings", "level"];
export const DEFAULT_TYPES = ["text/*", "application/json", "application/javascript", "application/xml", "image/svg+xml"];
const DEFAULT_ENCODINGS: Encoding[] = ["zstd", "br", "gzip"];
const TYPE = /^[a-z0-9!#$&^_.+-]+\/(\*|[a-z0-9!#$&^_.+-]+)$/;

/** A client's Accept-Encoding as q-values by coding (`*` included); q=0 refuses. */
export function parseAcceptEncoding(header: string): Map<string, number> {
  const q = new Map<string, number>();
  for (const part of header.split(",")) {
    const [name, ...params] = part.split(";");
    const coding = name!.trim().toLowerCase();
    if (coding === "") continue;
    let value = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*$/i.exec(p);
      if (m) value = Math.min(1, Number(m[1]));
    }
    q.set(coding === "x-gzip" ? "gzip" : coding, value);
  }
  return q;
}

/**
 * The encoding to use: the one the client gives the highest q-value, ties going to the
 * server's order (`offered`); a coding the client does not name takes `*`'s q-value (none
 * without `*`). Undefined when the client accepts none of them.
 */
export function negotiate(header: string, offered: readonly Encoding[]): Encoding | undefined {
  const q = parseAcceptEncoding(header);
  const star = q.get("*") ?? 0;
  let best: Encoding | undefined;
  let bestQ = 0;
  for (const e of offered) {
    const v = q.get(e) ?? star;
    if (v > bestQ) {
      best = e;
      bestQ = v;
    }
  }
  return best;
}

/** A matcher for the configured types: exact names in a set, `type/*` as prefixes. */
function typeMatcher(types: readonly string[]): (contentType: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const t of types) {
    if (t === "*/*") prefixes.push("");
    else if (t.endsWith("/*")) prefixes.push(t.slice(0, -1));
    else exact.add(t);
  }
  return (contentType) => {
    const semi = contentType.indexOf(";");
    const media = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
    if (exact.has(media)) return true;
    if (media === "text/event-stream") return false;
    for (const p of prefixes) if (media.startsWith(p)) return true;
    return false;
  };
}

/** Adds Accept-Encoding to Vary unless it (or `*`) is there already. */
export function mergeVary(headers: Headers): void {
  const vary = headers.get("vary");
  if (vary === null) return headers.set("vary", "Accept-Encoding");
  for (const v of vary.split(",")) {
    const name = v.trim().toLowerCase();
    if (name === "accept-encoding" || name === "*") return;
  }
  headers.set("vary", `${vary}, Accept-Encoding`);
}

function validate(options: CompressOptions) {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`options must be a map (types, min_size, encodings, level), got ${JSON.stringify(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (!KNOWN.includes(k)) throw new TypeError(`unknown option "${k}" (known: ${KNOWN.join(", ")})`);
  }
  const types = options.types ?? DEFAULT_TYPES;
  if (!Array.isArray(types) || types.length === 0) {
    throw new TypeError(`types must be a list of media types like text/* or application/json, got ${JSON.stringify(options.types)}`);
  }
  for (const t of types) {
    if (typeof t !== "string" || !(TYPE.test(t.toLowerCase()) || t === "*/*")) {
      throw new RangeError(`types: ${JSON.stringify(t)} is not a media type like text/* or application/json`);
    }
  }
  const minSize = parseSize(options.min_size ?? "1kib");
  if (minSize === undefined) throw new RangeError(`min_size must be a size like 1kib or 512, got ${JSON.stringify(options.min_size)}`);
  const encodings = options.encodings ?? DEFAULT_ENCODINGS;
  if (!Array.isArray(encodings) || encodings.length === 0) {
    throw new TypeError(`encodings must be a list of ${ENCODINGS.join(", ")}, got ${JSON.stringify(options.encodings)}`);
  }
  for (const e of encodings) {
    if (!ENCODINGS.includes(e)) throw new RangeError(`encodings: unknown encoding ${JSON.stringify(e)} (known: ${ENCODINGS.join(", ")})`);
  }
  const level = options.level ?? {};
  if (level === null || typeof level !== "object" || Array.isArray(level)) {
    throw new TypeError(`level must be a map like { gzip: 6, br: 4, zstd: 3 }, got ${JSON.stringify(options.level)}`);
  }
  const levels = { ...DEFAULT_LEVELS };
  for (const [e, v] of Object.entries(level)) {
    const range = LEVEL_RANGE[e as Encoding];
    if (!range) throw new RangeError(`level: unknown encoding ${JSON.stringify(e)} (known: ${ENCODINGS.join(", ")})`);
    if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw new RangeError(`level.${e} must be a whole number from ${range[0]} to ${range[1]}, got ${JSON.stringify(v)}`);
    }
    levels[e as Encoding] = v;
  }
  return { types, minSize, encodings: [...new Set(encodings)], levels };
}

/** Which encodings this runtime can make, checked once per process. */
const support = new Map<Encoding, boolean>();
function supported(e: Encoding): boolean {
  let ok = support.get(e);
  if (ok === undefined) support.set(e, ok = available(e));
  return ok;
}

const NO_BODY = (status: number) => status < 200 || status === 204 || status === 206 || status === 304;

/** Create the middleware for one route. */
export function createCompress(options: CompressOptions, api: PluginApi): Middleware {
  const o = validate(options ?? {});
  const offered = o.encodings.filter(supported);
  for (const e of o.encodings) {
    if (!supported(e)) api.log.info(`${e} is not available in this runtime's zlib; offering ${offered.join(", ") || "nothing"}`);
  }
  const matches = typeMatcher(o.types.map((t) => t.toLowerCase()));
  const { minSize, levels } = o;

  return async (c, next) => {
    const accept = c.req.raw.headers.get("accept-encoding");
    await next();
    const res = c.res;
    const h = res.headers;
    if (NO_BODY(res.status) || h.has("content-range")) return;
    const type = h.get("content-type");
    if (type === null || !matches(type)) return;
    const coded = h.get("content-encoding");
    if (coded !== null && coded.trim().toLowerCase() !== "identity") return;
    const cacheControl = h.get("cache-control");
    if (cacheControl !== null && /(?:^|,)\s*no-transform\s*(?:,|$)/i.test(cacheControl)) return;
    // From here the response's encoding depends on Accept-Encoding, whatever this client sent.
    mergeVary(h);
    if (c.req.method === "HEAD" || accept === null || res.body === null) return;
    const encoding = negotiate(accept, offered);
    if (encoding === undefined) return;
    const declared = h.get("content-length");
    if (declared !== null && Number(declared) < minSize) return;

    const reader = res.body.getReader();
    const head: Uint8Array[] = [];
    if (declared === null && minSize > 0) {
      // No length: read until min_size bytes are here (or the body ends) before deciding.
      let seen = 0;
      while (seen < minSize) {
        const r = await reader.read();
        if (r.done) {
          // The whole body, and it is small: as it came.
          c.res = new Response(concat(head, seen), res);
          return;
        }
        head.push(r.value);
        seen += r.value.byteLength;
      }
    }
    h.delete("content-length");
    h.delete("accept-ranges");
    h.set("content-encoding", encoding);
    const etag = h.get("etag");
    if (etag !== null && !etag.startsWith("W/")) h.set("etag", `W/${etag}`);
    c.res = new Response(encodeStream(encoding, levels[encoding], head, reader), res);
  };
}

function concat(parts: Uint8Array[], size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export default {
  kind: "middleware",
  name: "compress",
  create: (options: CompressOptions, api: PluginApi) => createCompress(options, api),
} satisfies MiddlewarePlugin<CompressOptions>;
