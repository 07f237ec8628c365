/**
 * What the built-in transforms share: `${client_ip}`-style templates compiled once at create(),
 * header-name checks, and the split of a target into path and query.
 */
import type { TransformRequest } from "../../plugins/api.ts";

const VARIABLES: Record<string, (r: TransformRequest) => string> = {
  client_ip: (r) => r.clientIp,
  request_id: (r) => r.requestId ?? "",
  host: (r) => hostname(r.host),
  path: (r) => r.path,
  query: (r) => r.query,
  method: (r) => r.method,
};

/** The Host without its port (`[::1]:8080` → `[::1]`). */
function hostname(host: string): string {
  const colon = host.lastIndexOf(":");
  return colon > 0 && host.indexOf("]", colon) < 0 ? host.slice(0, colon) : host;
}

/**
 * Compile `text` with `${client_ip}`, `${request_id}`, `${host}`, `${path}`, `${query}`,
 * `${method}`; a template without variables costs a constant. Throws on an unknown variable.
 */
export function compileTemplate(text: unknown, what: string): (r: TransformRequest) => string {
  if (typeof text !== "string" && typeof text !== "number") throw new TypeError(`${what} must be a string, got ${JSON.stringify(text)}`);
  const source = String(text);
  const parts: (string | ((r: TransformRequest) => string))[] = [];
  let last = 0;
  for (const m of source.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
    const fn = VARIABLES[m[1]!];
    if (fn === undefined) {
      throw new RangeError(`${what}: unknown variable \${${m[1]}} (known: ${Object.keys(VARIABLES).map((k) => `\${${k}}`).join(", ")})`);
    }
    if (m.index > last) parts.push(source.slice(last, m.index));
    parts.push(fn);
    last = m.index + m[0].length;
  }
  if (last < source.length) parts.push(source.slice(last));
  if (parts.length === 0) return () => "";
  if (parts.length === 1 && typeof parts[0] === "string") {
    const constant = parts[0];
    return () => constant;
  }
  return (r) => {
    let out = "";
    for (const p of parts) out += typeof p === "string" ? p : p(r);
    return out;
  };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Set by the proxy itself (framing, hop-by-hop): a transform may not change them. */
const RESERVED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "content-length",
  "proxy-authenticate",
  "proxy-authorization",
]);

/** A header name an option gives, lower-cased; throws for one that is not a name or that the proxy owns. */
export function headerName(name: unknown, what: string): string {
  if (typeof name !== "string" || !TOKEN.test(name)) throw new TypeError(`${what}: not a header name: ${JSON.stringify(name)}`);
  const n = name.toLowerCase();
  if (RESERVED.has(n)) throw new RangeError(`${what}: ${n} is set by the proxy and cannot be changed`);
  return n;
}

/** A map option (`{}` when absent); throws for anything else. */
export function mapOption(value: unknown, what: string): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new TypeError(`${what} must be a map, got ${JSON.stringify(value)}`);
  return value as Record<string, unknown>;
}

/** Throw for keys of `options` not in `known`. */
export function knownKeys(options: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) throw new TypeError(`unknown option "${k}" (known: ${known.join(", ")})`);
  }
}

/** `/a/b?x=1` → [`/a/b`, `?x=1`]. */
export function splitTarget(target: string): [string, string] {
  const q = target.indexOf("?");
  return q < 0 ? [target, ""] : [target.slice(0, q), target.slice(q)];
}
