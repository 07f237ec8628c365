/**
 * Header hygiene for a proxy. Hop-by-hop headers describe one connection and must not be
 * forwarded (RFC 9110 §7.6.1), and neither must any header the `Connection` header names.
 * Bun's fetch and Bun.serve forward them untouched, so the proxy strips them itself.
 */

/**
 * RFC 9110 §7.6.1 plus the de-facto ones (`Keep-Alive`, `Proxy-Connection`) every proxy drops, and
 * `Close`, a name RFC 9110 §18.4 reserves because `Connection: close` names it.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "close",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
]);

/** Header names listed in a `Connection` value, lower-cased; `undefined` when none. */
export function connectionTokens(value: string | null | undefined): Set<string> | undefined {
  // What nearly every backend sends names no header: no split, no strings.
  if (!value || value === "keep-alive" || value === "close" || value === "Keep-Alive" || value === "Close") return undefined;
  let out: Set<string> | undefined;
  for (const raw of value.split(",")) {
    const t = raw.trim().toLowerCase();
    if (t && t !== "close" && t !== "keep-alive") (out ??= new Set()).add(t);
  }
  return out;
}

export interface ForwardInfo {
  clientIp: string;
  /** `http` or `https`, as the client reached us. */
  proto: string;
  /** The Host to send upstream; `undefined` keeps the client's. */
  hostOverride: string | undefined;
}

/**
 * Build the upstream request headers as a plain object (what node:http takes) in one pass:
 * hop-by-hop headers dropped, `X-Forwarded-For` appended, `X-Forwarded-Proto/Host` set.
 */
export function upstreamHeaders(incoming: Headers, info: ForwardInfo): Record<string, string> {
  const named = connectionTokens(incoming.get("connection"));
  const out: Record<string, string> = {};
  let host = "";
  let xff = "";
  for (const [name, value] of incoming) {
    if (HOP_BY_HOP.has(name) || named?.has(name)) continue;
    if (name === "host") host = value;
    else if (name === "x-forwarded-for") xff = value;
    else if (name !== "x-forwarded-proto" && name !== "x-forwarded-host") out[name] = value;
  }
  out.host = info.hostOverride ?? host;
  out["x-forwarded-for"] = xff ? `${xff}, ${info.clientIp}` : info.clientIp;
  out["x-forwarded-proto"] = info.proto;
  if (host) out["x-forwarded-host"] = host;
  return out;
}

/**
 * The headers the proxy writes itself next to a request's lines forwarded as bytes
 * (RawExchange.forward): Host, X-Forwarded-For/-Proto/-Host as {@link upstreamHeaders} sets
 * them, and Content-Length, which is not among the lines.
 */
export function upstreamHeadersBlock(
  hostLine: string,
  forwardedFor: string,
  contentLength: number,
  info: ForwardInfo,
): Record<string, string> {
  const out: Record<string, string> = { host: info.hostOverride ?? hostLine };
  out["x-forwarded-for"] = forwardedFor ? `${forwardedFor}, ${info.clientIp}` : info.clientIp;
  out["x-forwarded-proto"] = info.proto;
  if (hostLine) out["x-forwarded-host"] = hostLine;
  if (contentLength >= 0) out["content-length"] = String(contentLength);
  return out;
}

/**
 * Upstream request headers from raw name/value pairs (names lower-cased), as
 * {@link upstreamHeaders} does for a `Headers` object. Repeated headers are joined with ", ".
 */
export function upstreamHeadersRaw(raw: readonly string[], info: ForwardInfo): Record<string, string> {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i] === "connection") named = connectionTokens(named ? `${[...named].join(",")},${raw[i + 1]}` : raw[i + 1]);
  }
  const out: Record<string, string> = {};
  let host = "";
  let xff = "";
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (HOP_BY_HOP.has(name) || named?.has(name)) continue;
    if (name === "host") host = value;
    else if (name === "x-forwarded-for") xff = xff ? `${xff}, ${value}` : value;
    else if (name !== "x-forwarded-proto" && name !== "x-forwarded-host") {
      const prev = out[name];
      // Cookie pairs are joined with "; " (RFC 9110 §5.3 does not apply to Cookie).
      out[name] = prev === undefined ? value : `${prev}${name === "cookie" ? "; " : ", "}${value}`;
    }
  }
  out.host = info.hostOverride ?? host;
  out["x-forwarded-for"] = xff ? `${xff}, ${info.clientIp}` : info.clientIp;
  out["x-forwarded-proto"] = info.proto;
  if (host) out["x-forwarded-host"] = host;
  return out;
}

/**
 * Response headers from the upstream client's raw pairs (names lower-cased): hop-by-hop ones
 * and Content-Length dropped (the listener frames the body itself), the declared length returned.
 */
export function downstreamRaw(raw: readonly string[]): { headers: string[]; length: number } {
  // Every Connection line's tokens (a second line must not hide the first's).
  let connection = "";
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i] === "connection") connection = connection ? `${connection},${raw[i + 1]}` : raw[i + 1]!;
  }
  const named = connectionTokens(connection);
  const headers: string[] = [];
  let length = -1;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name === "content-length") length = Number(raw[i + 1]);
    else if (!HOP_BY_HOP.has(name) && !named?.has(name)) headers.push(name, raw[i + 1]!);
  }
  return { headers, length };
}
