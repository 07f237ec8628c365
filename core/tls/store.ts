/**
 * The certificates of one TLS listener and the choice among them for a ClientHello: the server
 * name against each certificate's SAN names, exact match first, then a wildcard (`*.example.com`
 * covers one more label); no SNI or no match gets the first certificate. Names listed under
 * `tls.acme` that have no certificate yet refuse the handshake (a clear failure, not another
 * name's certificate), unless a file certificate covers them.
 */
import type { TlsCertificate } from "../runtime/types.ts";
import type { Certificate } from "./certs.ts";

/** One configured certificate: a file pair, or an ACME name (empty until obtained). */
export type Slot =
  | { readonly kind: "file"; readonly certFile: string; readonly keyFile: string; current: Certificate }
  | { readonly kind: "acme"; readonly name: string; current: Certificate | undefined };

export class CertSet {
  #exact = new Map<string, Certificate>();
  #wild = new Map<string, Certificate>();
  #pending = new Set<string>();
  #default: Certificate | undefined;
  #listeners: (() => void)[] = [];

  /** @param slots In config order: file certificates first, then ACME names. */
  constructor(readonly slots: Slot[]) {
    this.#rebuild();
  }

  /** The certificate for a server name (lower-cased by the caller or not), or an Error to refuse the handshake. */
  select(servername: string): TlsCertificate | Error {
    const name = servername.toLowerCase();
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    const wild = dot > 0 ? this.#wild.get(name.slice(dot + 1)) : undefined;
    if (wild !== undefined) return wild;
    if (this.#pending.has(name)) return new Error(`no certificate for ${name} yet (ACME order pending)`);
    return this.#default ?? new Error(`no certificate for ${name} yet`);
  }

  /** The first certificate; undefined while there is none (ACME names only, before the first order): handshakes then fail. */
  defaultCertificate(): Certificate | undefined {
    return this.#default;
  }

  /** Subscribe to changes of the default certificate. */
  onDefaultChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /** Put a new certificate in a slot (rotation, ACME); the maps are rebuilt, new handshakes see it. */
  replace(slot: Slot, cert: Certificate): void {
    slot.current = cert;
    this.#rebuild();
  }

  #rebuild(): void {
    const exact = new Map<string, Certificate>();
    const wild = new Map<string, Certificate>();
    const pending = new Set<string>();
    let first: Certificate | undefined;
    for (const s of this.slots) {
      const c = s.current;
      if (c === undefined) {
        if (s.kind === "acme") pending.add(s.name);
        continue;
      }
      first ??= c;
      // The first certificate that names a host wins, as in config order.
      for (const n of c.names) {
        if (n.startsWith("*.")) {
          if (!wild.has(n.slice(2))) wild.set(n.slice(2), c);
        } else if (!exact.has(n)) exact.set(n, c);
      }
    }
    for (const n of pending) if (exact.has(n)) pending.delete(n);
    this.#exact = exact;
    this.#wild = wild;
    this.#pending = pending;
    const changed = first !== this.#default;
    this.#default = first;
    if (changed) { for (const l of this.#listeners) l(); }
  }
}
