/**
 * TLS to backends (`pools.<name>.tls`): the CA, server name and client certificate files read
 * into what the upstream client passes to the runtime's connect. `https://` backends are
 * verified against the system's CAs by default; `insecure_skip_verify` turns that off.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { BackendTlsConfig } from "../config/tls.ts";
import type { UpstreamTls } from "../upstream/types.ts";
import { CertificateError, parseCertificate } from "./certs.ts";

/**
 * The upstream TLS settings of a pool whose backends include `https://` ones; undefined when the
 * pool has no `tls` key (the defaults: system CAs, the URL's host as the name). Throws
 * {@link CertificateError} naming the file.
 */
export function readBackendTls(config: BackendTlsConfig | undefined, baseDir: string): UpstreamTls | undefined {
  if (config === undefined) return undefined;
  const read = (p: string) => {
    const file = resolve(baseDir, p);
    try {
      return { file, text: readFileSync(file, "utf8") };
    } catch (e) {
      throw new CertificateError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e})`, { cause: e });
    }
  };
  const ca = config.ca !== undefined ? read(config.ca).text : undefined;
  let cert: string | undefined;
  let key: string | undefined;
  if (config.cert !== undefined && config.key !== undefined) {
    const c = read(config.cert);
    const k = read(config.key);
    // The same checks as a listener's certificate: a bad client certificate fails here, not at the backend.
    parseCertificate(c.text, k.text, { source: "file", certFile: c.file, keyFile: k.file });
    cert = c.text;
    key = k.text;
  }
  return {
    verify: !config.insecure_skip_verify,
    ...(ca !== undefined ? { ca } : {}),
    ...(config.server_name !== undefined ? { serverName: config.server_name } : {}),
    ...(cert !== undefined ? { cert, key } : {}),
  };
}
