/**
 * Where Fulcrum refuses what llhttp (strict) accepts, on purpose. A refusal of a request Node
 * accepted fails the differential test unless Fulcrum's reason (its parser's message) is listed
 * here, with why. docs/http.md lists the same cases.
 */
export interface StricterRule {
  /** Fulcrum's refusal message (its parser's, model.ts), or `connection closed`. */
  message: RegExp;
  /** Why Fulcrum is stricter than llhttp here. */
  why: string;
  /**
   * Narrows the rule when the message alone is broader: `line` is the refused request's first line,
   * `rest` the case's bytes from there (latin1, at most 8 KiB).
   */
  when?: (line: string, rest: string) => boolean;
}

// RFC 9110 §5.6.2: a token's bytes; a chunk extension as Fulcrum accepts it (RFC 9112 §7.1.1).
const T = "[!#$%&'*+.^_`|~0-9A-Za-z-]";
const EXT = `;${T}+(?:=(?:${T}+|"(?:[^"\\\\\r\n]|\\\\[^\r\n])*"))?`;
/** A chunk-size line whose extensions are valid up to `;name=` followed by nothing, `;`, or a token and a quote. */
const EXT_VALUE = new RegExp(`\r\n[0-9a-fA-F]+(?:${EXT})*;${T}+=(?:;|\r\n|${T}+")`);
/** The last chunk, then trailer fields up to a first Transfer-Encoding, which is empty. */
const EMPTY_TRAILER_TE = new RegExp(`\r\n0+(?:${EXT})*\r\n(?:(?!transfer-encoding:)${T}+:[^\r\n]*\r\n)*transfer-encoding:[ \t]*\r\n`, "i");

export const STRICTER: readonly StricterRule[] = [
  // The request line.
  {
    message: /^400 malformed request line$/,
    when: (line) => /^[^ ]+ [^ ]+$/.test(line) || / (RTSP|ICE)\/\d\.\d$/.test(line),
    why: "Fulcrum speaks HTTP/1.0 and HTTP/1.1 only. llhttp's request parser also takes RTSP/1.0 and ICE/1.0 " +
      "request lines (it is shared with RTSP and Icecast) and a request line without a version (HTTP/0.9).",
  },
  {
    message: /^505 HTTP version not supported/,
    why: "Fulcrum speaks HTTP/1.0 and HTTP/1.1 only (RFC 9112 §2.3: 505 for a major version it does not support); " +
      "llhttp parses any digit.digit version and leaves it to the application.",
  },
  {
    message: /^400 malformed request line$/,
    when: (line) => / {2}/.test(line),
    why: "RFC 9112 §3: one SP between the parts of the request line. llhttp also takes several spaces.",
  },
  {
    message: /^400 malformed request line$/,
    when: (_, rest) => rest.startsWith("\n") || rest.startsWith("\r"),
    why: "A bare CR or LF is not a line ending anywhere in Fulcrum's parser, an empty line before the request " +
      "line included (RFC 9112 §2.2 allows a recipient to take LF alone, never CR; Fulcrum takes neither). llhttp " +
      "skips both.",
  },
  {
    message: /^400 asterisk-form target for a method other than OPTIONS$/,
    why: "RFC 9112 §3.2.4: the asterisk form is only for a server-wide OPTIONS. llhttp takes `*` with any method " +
      "(SSDP's `M-SEARCH *` is multicast over UDP, not something to proxy).",
  },
  {
    message: /^404 no route for this host and path$/,
    when: (line) => line.split(" ")[1] === "*",
    why: "`OPTIONS *` asks the server itself (RFC 9110 §9.3.7), and routes match paths: Fulcrum answers it, 404, " +
      "and keeps the connection.",
  },
  {
    message: /^400 invalid character in request target$/,
    when: (line) => line.split(" ")[1]?.includes("#") === true,
    why: "RFC 9112 §3.2: a request-target has no fragment. A backend that strips `#…` sees another path than " +
      "the one routing matched; llhttp passes the fragment on.",
  },
  {
    message: /^400 invalid request target$/,
    why: "Fulcrum takes the origin form, `*` for OPTIONS, and the absolute form of http and https URLs (RFC 9112 " +
      "§3.2); llhttp parses any scheme (`ttp://…`, `ftp://…`) and leaves it to the application.",
  },
  {
    message: /^connection closed$/,
    when: (_, rest) => /\r\nconnection:[^\r\n]*close/i.test(rest.split("\r\n\r\n")[0]!),
    why: "Fulcrum reads `close` in a Connection field that llhttp does not take for one (`close<TAB>`: trailing OWS " +
      "is not part of a value, RFC 9110 §5.5) and closes after the answer; closing is always safe.",
  },
  {
    message: /^400 backslash in request path$/,
    why: "Some backends (Windows, some frameworks) read `\\` as `/`: routing would match another path than the " +
      "one served. llhttp passes it on.",
  },
  {
    message: /^417 unsupported Expect$/,
    why: "Fulcrum meets `Expect: 100-continue`, the whole value, and answers 417 to any other expectation (RFC 9110 " +
      "§10.1.1 allows it). Node's server looks for `100-continue` anywhere in the value (`x100-continue` passes) " +
      "and at Expect in HTTP/1.1 requests only.",
  },
  // Host.
  {
    message: /^400 (more than one Host header|invalid Host header)$/,
    why: "RFC 9112 §3.2: a server MUST answer 400 to a request with more than one Host line or an invalid Host " +
      "value (a space, userinfo `user@`, bytes outside a host and port). llhttp leaves Host to the application, and " +
      "Node's server checks only that there is one.",
  },
  // Framing.
  {
    message: /^400 Transfer-Encoding in an HTTP\/1\.0 request$/,
    why: "RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as having faulty framing " +
      "(it was likely forwarded by something that did not decode it). llhttp decodes it as chunked.",
  },
  {
    message: /^400 Transfer-Encoding without chunked as the final coding$/,
    why: "RFC 9112 §6.3: a request whose Transfer-Encoding does not end in chunked cannot be framed and MUST be " +
      "refused. llhttp refuses it too, except where it ignores the field (an empty value) or reads no body at all " +
      "(an upgrade request: llhttp stops at its head).",
  },
  {
    message: /^400 tab after a (Transfer-Encoding|Content-Length) value$/,
    why: "Trailing OWS is not part of a value, but llhttp refuses a tab after a Content-Length or a coding, and so " +
      "does Fulcrum (a parser that reads `chunked<TAB>` as another coding frames the body otherwise). llhttp " +
      "overlooks it in a Transfer-Encoding line when a later line says chunked; Fulcrum refuses it in every line.",
  },
  {
    message: /^501 unsupported Transfer-Encoding/,
    why: "A coding before `chunked` (`gzip, chunked`), or an empty list element (`,chunked`): Fulcrum decodes " +
      "chunked only, and passing a body on without its other coding would change it (RFC 9112 §6.1: 501 for a " +
      "coding the server does not understand). llhttp takes `chunked` last as the framing and hands on the rest.",
  },
  {
    message: /^400 bad chunked request body: invalid chunk extension value$/,
    when: (_, rest) => EXT_VALUE.test(rest),
    why: "RFC 9112 §7.1.1: an extension's value is a token or a quoted string, neither of which is empty; " +
      'llhttp takes `;a=` with nothing after the `=`, and a token followed by a quoted string (`;a=b""`).',
  },
  {
    message: /^400 bad chunked request body: invalid chunk extension name$/,
    when: (_, rest) => /\r\n[0-9a-fA-F]+(;[^\r\n]*)?;[;=]/.test(rest),
    why: "RFC 9112 §7.1.1: an extension's name is a token, never empty; llhttp takes `;=b`, and `;;a` (not `;;` " +
      "alone).",
  },
  {
    message: /^400 bad chunked request body: (chunk extension too long|chunk size line too long)$/,
    why: "A chunk-size line with its extensions is bounded to 4 KiB (extensions are dropped; unbounded ones are " +
      "a resource attack, CVE-2024-22019). Node allows up to 16 KiB.",
  },
  {
    message: /^400 bad chunked request body: (host|connection) in a trailer$/,
    why: "RFC 9110 §6.5.1: routing fields do not belong in a trailer (a proxy that merges trailers into the " +
      "header section would route by them), and llhttp applies a trailer `Connection: close` where others ignore " +
      "it. llhttp refuses Content-Length and Transfer-Encoding there, not these two.",
  },
  {
    message: /^400 bad chunked request body: transfer-encoding in a trailer$/,
    when: (_, rest) => EMPTY_TRAILER_TE.test(rest),
    why: "RFC 9110 §6.5.1: framing fields do not belong in a trailer. llhttp refuses a trailer Transfer-Encoding " +
      "with a value but takes an empty one; Fulcrum refuses it by name, whatever its value.",
  },
];

export function stricterRule(reason: string, line: string, rest: string): StricterRule | undefined {
  return STRICTER.find((r) => r.message.test(reason) && (r.when === undefined || r.when(line, rest)));
}
