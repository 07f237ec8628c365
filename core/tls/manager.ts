/**
 * The certificates of a process: one {@link CertSet} per TLS listener, read and checked at start
 * (a problem names the file and its place in the config; nothing listens), re-read on reload
 * (a bad new file is refused and the old certificate keeps serving), and what the runtime needs
 * to serve each TLS listener ({@link TlsManager.serveTls}).
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ConfigError, configSource } from "../config/source.ts";
import type { Config } from "../config/schema.ts";
import type { ListenerConfig, TlsListenerConfig } from "../config/tls.ts";
import { listenersOf } from "../config/defaults.ts";
import type { ServeTls } from "../runtime/types.ts";
import { CertificateError, daysLeft, nodeCrypto, readCertificate, type Certificate } from "./certs.ts";
import { handshakeFailure, ListenerStats } from "./handshake.ts";
import { CertSet, type Slot } from "./store.ts";

/** TLS 1.2 suites: forward secret and AEAD only (Mozilla's "intermediate"); TLS 1.3's are all strong. */
export const DEFAULT_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** ALPN offered: `h2` (core/http2/) and `http/1.1`, as the listener's `tls.alpn` lists them. */
const SERVED_ALPN = new Set(["h2", "http/1.1"]);

/** One TLS listener's certificates and settings. */
export interface TlsListener {
  /** Index in `listenersOf(config.listen)`. */
  readonly index: number;
  readonly config: ListenerConfig & { tls: TlsListenerConfig };
  readonly certs: CertSet;
  readonly clientCa: string | undefined;
}

/** What the admin API shows of one certificate slot (`GET /certificates`). */
export interface CertificateStatus {
  listener: string;
  /** The configured names (ACME) or the certificate's SAN names (file). */
  names: readonly string[];
  source: "file" | "acme";
  state: "serving" | "pending";
  issuer: string | null;
  not_after: string | null;
  days_left: number | null;
  fingerprint: string | null;
  cert_file: string | null;
  /** The last failed reload of this file or the last failed ACME order or renewal, if any since it last succeeded. */
  last_error: string | null;
  /** When the certificate was last (re)loaded or obtained. */
  last_renewal: string | null;
}

export interface Logger {
  debug(message: string, props?: Record<string, unknown>): void;
  info(message: string, props?: Record<string, unknown>): void;
  warning(message: string, props?: Record<string, unknown>): void;
  error(message: string, props?: Record<string, unknown>): void;
}

interface SlotState {
  lastError: string | null;
  lastRenewal: Date | null;
}

/** The folder relative paths in a config resolve against. */
export function configDir(config: Config, cwd: string): string {
  return dirname(resolve(cwd, configSource(config).file));
}

export class TlsManager {
  readonly listeners: TlsListener[] = [];
  /** Per listener (plain ones too), in `listenersOf` order: requests and handshakes. */
  readonly stats: ListenerStats[];
  readonly #state = new WeakMap<Slot, SlotState>();
  /** ACME names: the slots (one per TLS listener naming it) to fill when a certificate arrives. */
  readonly acmeSlots = new Map<string, Slot[]>();

  /** `acme.storage`, absolute: the account key and the certificates obtained. */
  readonly acmeStorage: string;
  /** `acme.trusted_ca`, read. */
  readonly acmeTrustedCa: string | undefined;

  /**
   * Read and check every certificate of `config` (and the ACME ones stored under `acme.storage`).
   * Throws {@link ConfigError} listing every problem with its `file:line:col`; nothing should listen then.
   */
  constructor(
    config: Config,
    readonly baseDir: string,
    private readonly log: Logger,
  ) {
    const source = configSource(config);
    const problems: string[] = [];
    this.acmeStorage = this.path(config.acme?.storage ?? "./acme");
    if (config.acme?.trusted_ca !== undefined) {
      const file = this.path(config.acme.trusted_ca);
      try {
        this.acmeTrustedCa = readFileSync(file, "utf8");
        new (nodeCrypto().X509Certificate)(this.acmeTrustedCa);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        problems.push(
          `${source.at(["acme", "trusted_ca"])}: acme.trusted_ca: ${
            code?.startsWith("E") ? `cannot read ${file} (${code})` : `${file} is not a PEM certificate`
          }`,
        );
      }
    }
    const all = listenersOf(config.listen);
    this.stats = all.map((l) => new ListenerStats(`${l.hostname}:${l.port}`, l.tls ? "https" : "http"));
    all.forEach((l, i) => {
      const tls = l.tls;
      if (!tls) return;
      const at = (...path: (string | number)[]) => source.at(["listen", i, "tls", ...path]);
      const slots: Slot[] = [];
      tls.certificates.forEach((c, j) => {
        const certFile = this.path(c.cert);
        const keyFile = this.path(c.key);
        try {
          const current = readCertificate(certFile, keyFile, { source: "file" });
          const slot: Slot = { kind: "file", certFile, keyFile, current };
          this.#state.set(slot, { lastError: null, lastRenewal: new Date() });
          slots.push(slot);
        } catch (e) {
          problems.push(`${at("certificates", j)}: listen[${i}].tls.certificates[${j}]: ${(e as Error).message}`);
        }
      });
      for (const name of tls.acme) {
        const slot: Slot = { kind: "acme", name, current: this.#stored(name) };
        this.#state.set(slot, { lastError: null, lastRenewal: slot.current ? new Date() : null });
        slots.push(slot);
        const list = this.acmeSlots.get(name) ?? [];
        list.push(slot);
        this.acmeSlots.set(name, list);
      }
      let clientCa: string | undefined;
      if (tls.client_ca !== undefined) {
        const file = this.path(tls.client_ca);
        try {
          clientCa = readFileSync(file, "utf8");
        } catch (e) {
          problems.push(`${at("client_ca")}: listen[${i}].tls.client_ca: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e})`);
        }
        try {
          if (clientCa !== undefined) new (nodeCrypto().X509Certificate)(clientCa);
        } catch {
          problems.push(`${at("client_ca")}: listen[${i}].tls.client_ca: ${file} is not a PEM certificate`);
        }
      }
      this.listeners.push({ index: i, config: { ...l, tls }, certs: new CertSet(slots), clientCa });
    });
    if (problems.length) throw new ConfigError(problems);
  }

  /** An absolute path for a path in the config. */
  path(p: string): string {
    return resolve(this.baseDir, p);
  }

  /** Every certificate and key file (to watch for rotation). */
  files(): string[] {
    const out: string[] = [];
    for (const l of this.listeners) for (const s of l.certs.slots) if (s.kind === "file") out.push(s.certFile, s.keyFile);
    return out;
  }

  /**
   * Re-read every certificate file. A changed one that checks out replaces the old one for new
   * handshakes (established connections keep theirs); a bad one is refused and the old keeps
   * serving. Returns the problems (also logged).
   */
  reload(): string[] {
    const problems: string[] = [];
    for (const l of this.listeners) {
      for (const slot of l.certs.slots) {
        if (slot.kind !== "file") continue;
        const state = this.#state.get(slot)!;
        let next: Certificate;
        try {
          next = readCertificate(slot.certFile, slot.keyFile, { source: "file" });
        } catch (e) {
          const message = e instanceof CertificateError ? e.message : String(e);
          state.lastError = message;
          problems.push(`certificate ${slot.certFile}: ${message}; the old one keeps serving`);
          this.log.error("certificate reload refused; the old certificate keeps serving: {error}", {
            error: message,
            cert_file: slot.certFile,
          });
          continue;
        }
        state.lastError = null;
        if (next.fingerprint === slot.current.fingerprint) continue;
        l.certs.replace(slot, next);
        state.lastRenewal = new Date();
        this.log.info("certificate reloaded", {
          cert_file: slot.certFile,
          names: next.names,
          not_after: next.notAfter.toISOString(),
        });
      }
    }
    return problems;
  }

  /** An ACME certificate for `name` was obtained or renewed (here or, with workers, by the primary). */
  acmeIssued(name: string, cert: Certificate): void {
    for (const slot of this.acmeSlots.get(name) ?? []) {
      const l = this.listeners.find((x) => x.certs.slots.includes(slot))!;
      l.certs.replace(slot, cert);
      const state = this.#state.get(slot)!;
      state.lastError = null;
      state.lastRenewal = new Date();
    }
  }

  /** The certificate stored for `name` under `acme.storage`, if there is a usable one. */
  #stored(name: string): Certificate | undefined {
    const f = acmeFiles(this.acmeStorage, name);
    try {
      return readCertificate(f.cert, f.key, { source: "acme" });
    } catch (e) {
      if (!/ENOENT/.test((e as Error).message)) {
        this.log.warning("stored ACME certificate for {name} not used: {error}; a new one will be ordered", {
          name,
          error: (e as Error).message,
        });
      }
      return undefined;
    }
  }

  /** The names some listener gets over ACME. */
  acmeNames(): string[] {
    return [...this.acmeSlots.keys()];
  }

  /** Load `name`'s certificate from `acme.storage` again (a worker, told by its primary that it was renewed). */
  acmeLoad(name: string): void {
    const c = this.#stored(name);
    if (c !== undefined && c.fingerprint !== this.acmeCertificate(name)?.fingerprint) this.acmeIssued(name, c);
  }

  /** An ACME order or renewal for `name` failed: shown by the admin API until the next success. */
  acmeFailed(name: string, error: string): void {
    for (const slot of this.acmeSlots.get(name) ?? []) this.#state.get(slot)!.lastError = error;
  }

  /** The current ACME certificate of `name`, if any. */
  acmeCertificate(name: string): Certificate | undefined {
    return this.acmeSlots.get(name)?.[0]?.current;
  }

  /** What the runtime needs to serve listener `l`; handshake outcomes go to its stats and the debug log. */
  serveTls(l: TlsListener): ServeTls {
    const tls = l.config.tls;
    const stats = this.stats[l.index]!;
    const log = this.log;
    return {
      select: (name) => l.certs.select(name),
      defaultCertificate: () => l.certs.defaultCertificate(),
      onDefaultChange: (f) => l.certs.onDefaultChange(f),
      minVersion: tls.min_version,
      alpn: tls.alpn.filter((p) => SERVED_ALPN.has(p)),
      clientCa: l.clientCa,
      ciphers: tls.ciphers ?? DEFAULT_CIPHERS,
      handshakeTimeoutMs: tls.handshake_timeout,
      handshake(ok, error, clientIp) {
        if (ok) return stats.handshake("ok");
        const reason = handshakeFailure(error);
        stats.handshake(reason);
        log.debug("TLS handshake failed: {reason}", {
          reason,
          listener: stats.name,
          client_ip: clientIp,
          error: error === "timeout" ? `no handshake within ${tls.handshake_timeout}ms` : String(error?.message ?? error),
        });
      },
    };
  }

  /** Every certificate slot, for `GET /certificates`. */
  status(now = Date.now()): CertificateStatus[] {
    const out: CertificateStatus[] = [];
    for (const l of this.listeners) {
      const listener = `${l.config.hostname}:${l.config.port}`;
      for (const s of l.certs.slots) {
        const c = s.current;
        const st = this.#state.get(s)!;
        out.push({
          listener,
          names: s.kind === "acme" ? [s.name] : c!.names,
          source: s.kind,
          state: c ? "serving" : "pending",
          issuer: c?.issuer ?? null,
          not_after: c?.notAfter.toISOString() ?? null,
          days_left: c ? Math.round(daysLeft(c, now) * 100) / 100 : null,
          fingerprint: c?.fingerprint ?? null,
          cert_file: s.kind === "file" ? s.certFile : (c?.certFile ?? null),
          last_error: st.lastError,
          last_renewal: st.lastRenewal?.toISOString() ?? null,
        });
      }
    }
    return out;
  }
}

/** Where an ACME name's certificate and key are stored under `acme.storage`. */
export function acmeFiles(storage: string, name: string): { cert: string; key: string } {
  return { cert: join(storage, "certificates", `${name}.pem`), key: join(storage, "certificates", `${name}.key`) };
}
