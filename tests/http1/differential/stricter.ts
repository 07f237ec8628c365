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
  /** Narrows the rule, by the refused request's line (and its head), when the message alone is broader. */
  when?: (line: string, head: string) => boolean;
}

export const STRICTER: readonly StricterRule[] = [
  {
    message: /^malformed request line$/,
    when: (line) => /^[^ ]+ [^ ]+$/.test(line) || / (RTSP|ICE)\/\d\.\d$/.test(line),
    why: "Fulcrum speaks HTTP/1.0 and HTTP/1.1 only. llhttp's request parser also takes RTSP/1.0 and ICE/1.0 " +
      "request lines (it is shared with RTSP and Icecast) and a request line without a version (HTTP/0.9).",
  },
  {
    message: /^asterisk-form target for a method other than OPTIONS$/,
    why: "RFC 9112 §3.2.4: the asterisk form is only for a server-wide OPTIONS. llhttp takes `*` with any method " +
      "(SSDP's `M-SEARCH *` is multicast over UDP, not something to proxy).",
  },
  {
    message: /^invalid character in request target$/,
    when: (line) => line.split(" ")[1]?.includes("#") === true,
    why: "RFC 9112 §3.2: a request-target has no fragment. A backend that strips `#…` sees another path than " +
      "the one routing matched; llhttp passes the fragment on.",
  },
  {
    message: /^invalid Host header$/,
    when: (line) => /^[^ ]+ [a-z][a-z0-9+.-]*:\/\/[^/?# ]*@/i.test(line),
    why: "RFC 9110 §4.2.4: userinfo (`user:pass@`) in an http(s) target is deprecated and a recipient should treat " +
      "it as an error; Fulcrum would otherwise forward the credentials as part of the Host.",
  },
];

export function stricterRule(reason: string, line: string, head: string): StricterRule | undefined {
  return STRICTER.find((r) => r.message.test(reason) && (r.when === undefined || r.when(line, head)));
}
