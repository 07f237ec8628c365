/**
 * A certificate and its key, read and checked: what a TLS listener serves and what the admin API
 * shows. Every check that would otherwise surface as a failed handshake hours later is made when
 * the file is read: unreadable file, not PEM, key not matching the certificate, expired, no SAN
 * names.
 */
import type { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

/** node:crypto (~8 ms of CPU to load) once a certificate is read: not at a start without TLS. */
export const nodeCrypto = () => process.getBuiltinModule("node:crypto") as typeof import("node:crypto");

/** Where a certificate came from. */
export type CertificateSource = "file" | "acme" | "placeholder";

export interface Certificate {
  /** PEM: the leaf first, then any intermediates. */
  readonly cert: string;
  readonly key: string;
  /** The DNS names in its subjectAltName, lower-cased (`*.example.com` for a wildcard). */
  readonly names: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly issuer: string;
  readonly subject: string;
  readonly fingerprint: string;
  readonly source: CertificateSource;
  /** The files it was read from (source "file" and "acme"). */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

/** A certificate or key that cannot be served; the message names the file and what is wrong. */
export class CertificateError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CertificateError";
  }
}

export interface ParseOptions {
  source: CertificateSource;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** Checked against notAfter; default now. */
  now?: Date;
}

/** Parse and check a PEM certificate (chain) and its key. Throws {@link CertificateError}. */
export function parseCertificate(certPem: string, keyPem: string, o: ParseOptions): Certificate {
  const certName = o.certFile ?? "the certificate";
  const keyName = o.keyFile ?? "the key";
  let x509: X509Certificate;
  try {
    x509 = new (nodeCrypto().X509Certificate)(certPem);
  } catch (e) {
    throw new CertificateError(`${certName} is not a PEM certificate (${short(e)})`, { cause: e });
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = nodeCrypto().createPrivateKey(keyPem);
  } catch (e) {
    throw new CertificateError(`${keyName} is not an unencrypted PEM private key (${short(e)})`, { cause: e });
  }
  if (!x509.checkPrivateKey(key)) throw new CertificateError(`${keyName} is not the key of ${certName}`);
  const notAfter = new Date(x509.validTo);
  const notBefore = new Date(x509.validFrom);
  const now = o.now ?? new Date();
  if (notAfter.getTime() <= now.getTime()) throw new CertificateError(`${certName} expired on ${notAfter.toISOString()}`);
  const names = sanNames(x509.subjectAltName);
  if (names.length === 0) {
    throw new CertificateError(`${certName} has no DNS names in subjectAltName (clients ignore the subject's CN)`);
  }
  return {
    cert: certPem,
    key: keyPem,
    names,
    notBefore,
    notAfter,
    issuer: oneLine(x509.issuer),
    subject: oneLine(x509.subject),
    fingerprint: x509.fingerprint256,
    source: o.source,
    certFile: o.certFile,
    keyFile: o.keyFile,
  };
}

/** Read and check a certificate and key from files. Throws {@link CertificateError}. */
export function readCertificate(certFile: string, keyFile: string, o: Omit<ParseOptions, "certFile" | "keyFile">): Certificate {
  const read = (f: string) => {
    try {
      return readFileSync(f, "utf8");
    } catch (e) {
      throw new CertificateError(`cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? short(e)})`, { cause: e });
    }
  };
  return parseCertificate(read(certFile), read(keyFile), { ...o, certFile, keyFile });
}

/** `DNS:a.example, DNS:*.b.example, IP Address:127.0.0.1` → the DNS names, lower-cased. */
export function sanNames(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const out: string[] = [];
  for (const part of subjectAltName.split(",")) {
    const p = part.trim();
    if (p.startsWith("DNS:")) out.push(p.slice(4).toLowerCase());
  }
  return out;
}

/** Whether `name` (lower-case) is covered by a certificate name: exact, or `*.rest` for one more label. */
export function nameMatches(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  if (!pattern.startsWith("*.")) return false;
  const dot = name.indexOf(".");
  return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
}

/** Whole days from `now` to the certificate's expiry (negative once expired). */
export function daysLeft(c: Certificate, now = Date.now()): number {
  return (c.notAfter.getTime() - now) / 86_400_000;
}

function oneLine(dn: string): string {
  return dn.split("\n").filter(Boolean).join(", ");
}

function short(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0]!;
}
