/**
 * Handshake outcomes by reason, for `/metrics` and debug logs: a plain-HTTP request to the TLS
 * port, garbage, a refused version, an unknown name, a stalled client. The reasons are a fixed
 * set (the metric's label), read from the TLS library's error (BoringSSL under Bun, OpenSSL
 * elsewhere: both name the error in the last `:`-separated field).
 */

export const HANDSHAKE_RESULTS = [
  "ok",
  "http_request", // plain HTTP sent to the TLS port
  "not_tls", // bytes that are no TLS record
  "protocol_version", // TLS 1.0/1.1, or below min_version
  "no_certificate", // a name Fulcrum has no certificate for yet (ACME pending), or none at all
  "no_shared_cipher",
  "client_certificate", // mTLS: missing or unverifiable client certificate
  "client_alert", // the client gave up (e.g. it does not trust our certificate)
  "timeout", // no handshake within tls.handshake_timeout
  "closed", // the client closed before finishing
  "other",
] as const;

export type HandshakeResult = (typeof HANDSHAKE_RESULTS)[number];

const BY_CODE: Record<string, HandshakeResult> = {
  HTTP_REQUEST: "http_request",
  HTTPS_PROXY_REQUEST: "http_request",
  WRONG_VERSION_NUMBER: "not_tls",
  UNKNOWN_PROTOCOL: "not_tls",
  DECODE_ERROR: "not_tls",
  UNEXPECTED_RECORD: "not_tls",
  UNSUPPORTED_PROTOCOL: "protocol_version",
  UNSUPPORTED_PROTOCOL_VERSION: "protocol_version",
  TLSV1_ALERT_PROTOCOL_VERSION: "protocol_version",
  CONNECTION_REJECTED: "no_certificate",
  NO_CERTIFICATE_SET: "no_certificate",
  NO_SHARED_CIPHER: "no_shared_cipher",
  PEER_DID_NOT_RETURN_A_CERTIFICATE: "client_certificate",
  CERTIFICATE_VERIFY_FAILED: "client_certificate",
};

/** The reason a handshake failed, from the runtime's error. */
export function handshakeFailure(error: Error | "timeout" | undefined): HandshakeResult {
  if (error === "timeout") return "timeout";
  if (error === undefined) return "other";
  const code = (error as NodeJS.ErrnoException).code;
  const message = String(error.message ?? "");
  if (code === "ECONNRESET" || /disconnected before|socket hang up|closed/i.test(message)) return "closed";
  const name = /:([A-Z0-9_]+)\s*$/.exec(message)?.[1] ?? "";
  const known = BY_CODE[name];
  if (known !== undefined) return known;
  if (name.startsWith("TLSV1_ALERT_") || name.startsWith("SSLV3_ALERT_")) return "client_alert";
  if (name.includes("CERTIFICATE")) return "client_certificate";
  return "other";
}

/** One listener's counts, read at scrape time. */
export class ListenerStats {
  requests = 0;
  readonly handshakes = new Map<HandshakeResult, number>();
  constructor(
    /** host:port */
    readonly name: string,
    readonly scheme: "http" | "https",
  ) {}

  handshake(result: HandshakeResult): void {
    this.handshakes.set(result, (this.handshakes.get(result) ?? 0) + 1);
  }
}
