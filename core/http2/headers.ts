/**
 * An HTTP/2 request's header section mapped to what the HTTP/1.1 side of the proxy reads (RFC
 * 9113 §8.3, RFC 9110 §7.6.1): pseudo-headers to the request line and Host, connection-specific
 * headers refused, cookies (split by HTTP/2) joined with "; ".
 */
import { Buffer } from "node:buffer";
import { RequestError } from "../http1/request-head.ts";
import { MAX_TARGET } from "../http1/request-head.ts";
import { normalizeTarget } from "../http1/target.ts";

/** Headers that describe one HTTP/1.1 connection: malformed in an HTTP/2 request (RFC 9113 §8.2.2), dropped from a response. */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

/** An HTTP/2 request as the proxy reads it. */
export interface H2Head {
  method: string;
  target: string;
  host: string;
  /** name, value, … lower-cased, `host` from :authority; no pseudo-headers. */
  rawHeaders: string[];
  /** Content-Length, -1 when absent. */
  contentLength: number;
  /** An extended CONNECT (RFC 8441) for this protocol (`websocket`), mapped to a GET with an Upgrade. */
  connectProtocol: string | undefined;
}

const TARGET_OK = /^[\x21-\x7e]*$/;
const HOST_OK = /^[\w.~!$&'()*+,;=:%[\]-]*$/;

/**
 * Map a request's header object (fields.ts requestFields: names lower-case, repeated ones as
 * arrays, joined here with ", ", cookies with "; ") to an {@link H2Head}. Throws {@link RequestError} for a request the
 * HTTP/1.1 listener would refuse too (its status: 400, 414, 431).
 */
export function requestHead(headers: Record<string, string | string[] | undefined>, maxHeaderList: number): H2Head {
  let method = "";
  let path = "";
  let authority = "";
  let protocol: string | undefined;
  let size = 0;
  let contentLength = -1;
  let host: string | undefined;
  const raw: string[] = [];
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    const value = typeof v === "string" ? v : v.join(name === "cookie" ? "; " : ", ");
    size += name.length + value.length + 32;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ":method") method = value;
      else if (name === ":path") path = value;
      else if (name === ":authority") authority = value;
      else if (name === ":protocol") protocol = value;
      continue;
    }
    if (CONNECTION_SPECIFIC.has(name)) throw new RequestError(400, `connection-specific header in an HTTP/2 request: ${name}`);
    // TE is allowed with "trailers" only (RFC 9113 §8.2.2); it is hop-by-hop, never forwarded.
    if (name === "te") {
      if (value.trim().toLowerCase() !== "trailers") throw new RequestError(400, "TE other than trailers in an HTTP/2 request");
      continue;
    }
    if (name === "host") {
      host = value;
      continue;
    }
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value)) throw new RequestError(400, "invalid Content-Length");
      contentLength = Number(value);
    }
    raw.push(name, value);
  }
  if (maxHeaderList > 0 && size > maxHeaderList) {
    throw new RequestError(431, `request header list larger than ${maxHeaderList} bytes`);
  }
  let connectProtocol: string | undefined;
  if (method === "CONNECT") {
    // Only the extended CONNECT of RFC 8441 is served; plain CONNECT (a proxy tunnel) is not.
    if (protocol === undefined) throw new RequestError(501, "CONNECT is not supported");
    connectProtocol = protocol.toLowerCase();
    method = "GET";
  } else if (method === "") throw new RequestError(400, "missing :method");
  if (path === "" || path.length > MAX_TARGET) {
    throw new RequestError(path === "" ? 400 : 414, path === "" ? "missing :path" : `request target longer than ${MAX_TARGET} bytes`);
  }
  if (!TARGET_OK.test(path) || path.includes("#")) throw new RequestError(400, "invalid character in request target");
  let target: string;
  if (path === "*") {
    if (method !== "OPTIONS") throw new RequestError(400, "asterisk-form target for a method other than OPTIONS");
    target = "*";
  } else if (path.charCodeAt(0) !== 47) throw new RequestError(400, "invalid request target");
  else target = normalizeTarget(path);
  // :authority wins over a Host header (RFC 9113 §8.3.1); one of them is needed to route by host.
  const hostValue = authority || host || "";
  if (!HOST_OK.test(hostValue)) throw new RequestError(400, "invalid :authority");
  if (hostValue !== "") raw.push("host", hostValue);
  if (connectProtocol === "websocket") {
    // The backend speaks RFC 6455, whose handshake needs a key and a version the HTTP/2 client does not send.
    if (!raw.includes("sec-websocket-key"))
      raw.push("sec-websocket-key", Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64"));
    if (!raw.includes("sec-websocket-version")) raw.push("sec-websocket-version", "13");
  }
  return { method, target, host: hostValue, rawHeaders: raw, contentLength, connectProtocol };
}
