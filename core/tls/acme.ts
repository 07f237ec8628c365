/**
 * Certificates obtained and renewed over ACME (RFC 8555) with the `acme-client` package: one
 * certificate per name, http-01 challenges answered on the plain listeners (edge.ts), the
 * account key and certificates kept under `acme.storage` and reused on restart. Renewal runs in
 * the background (a third of the lifetime before expiry unless `renew_before` says otherwise,
 * jittered); a failed order is retried with backoff and never takes a serving certificate down.
 * With workers, only the primary runs this; workers load what it stored (core/cluster/).
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import https from "node:https";
import { dirname, join } from "node:path";
import type { Client } from "acme-client";
import { acmeSchema, type AcmeConfig } from "../config/tls.ts";
import type { Config } from "../config/schema.ts";
import { type Certificate, parseCertificate } from "./certs.ts";
import { acmeFiles, type Logger, type TlsManager } from "./manager.ts";

/** First retry after a failed order; doubled each time up to {@link MAX_RETRY_MS}. */
const FIRST_RETRY_MS = 2_000;
const MAX_RETRY_MS = 3_600_000;
/** A timer longer than this is re-armed in steps (setTimeout's limit is ~24.8 days). */
const MAX_TIMER_MS = 86_400_000;

export interface AcmeOptions {
  config: AcmeConfig;
  /** `acme.storage`, absolute. */
  storage: string;
  /** `acme.trusted_ca` read (PEM), for test CAs. */
  trustedCa: string | undefined;
  /** Every name under some listener's `tls.acme`. */
  names: readonly string[];
  tls: TlsManager;
  log: Logger;
  /** Serve an http-01 challenge (keyAuthorization) until it is removed (null); resolves once it is served everywhere. */
  challenge(token: string, keyAuthorization: string | null): Promise<void> | void;
  /** A certificate was stored for `name` (workers load it). */
  issued?(name: string): void;
}

export interface AcmeRunner {
  /** The certificate in force for `name` and when it is next looked at. */
  readonly next: ReadonlyMap<string, Date>;
  stop(): void;
}

/** Start obtaining and renewing the certificates of `o.names`. */
export function startAcme(o: AcmeOptions): AcmeRunner {
  const timers = new Map<string, ReturnType<typeof setTimeout>>();
  const next = new Map<string, Date>();
  const failures = new Map<string, number>();
  let stopped = false;
  let client: Client | undefined;
  // One order at a time: CAs rate-limit, and the account is created once.
  let queue: Promise<unknown> = Promise.resolve();

  // acme-client is loaded only here, when a config has ACME names: it costs ~140 ms and ~36 MB of
  // RSS to load on Bun, which every process would pay otherwise.
  const lib = import("acme-client").then((acme) => {
    if (o.trustedCa !== undefined) acme.axios.defaults.httpsAgent = new https.Agent({ ca: o.trustedCa, keepAlive: true });
    // Our own backoff retries; acme-client's (5 tries, 5 s apart) would hide a CA that is down for half a minute.
    const settings = (acme.axios.defaults as { acmeSettings?: Record<string, number> }).acmeSettings;
    if (settings) {
      settings.retryMaxAttempts = 1;
      settings.retryDefaultDelay = 1;
    }
    acme.axios.defaults.timeout = 30_000;
    return acme;
  });
  lib.catch(() => {}); // a failed load is reported by the order that awaits it

  const schedule = (name: string, at: number) => {
    clearTimeout(timers.get(name));
    if (stopped) return;
    next.set(name, new Date(at));
    const wait = Math.max(0, at - Date.now());
    const timer = setTimeout(() => {
      if (Date.now() < at) return schedule(name, at); // a step of a long wait
      queue = queue.then(() => order(name));
    }, Math.min(wait, MAX_TIMER_MS));
    (timer as { unref?: () => void }).unref?.();
    timers.set(name, timer);
  };

  /** When `cert` is due for renewal, with jitter so that many names (and many proxies) do not renew at once. */
  const dueAt = (cert: Certificate) => {
    const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime();
    const before = o.config.renew_before ?? lifetime / 3;
    const jitter = Math.random() * Math.min(before / 10, 3_600_000);
    return cert.notAfter.getTime() - before - jitter;
  };

  const account = async (): Promise<Client> => {
    if (client) return client;
    const acme = await lib;
    mkdirSync(o.storage, { recursive: true });
    const keyFile = join(o.storage, "account.key");
    const infoFile = join(o.storage, "account.json");
    let key: string;
    try {
      key = readFileSync(keyFile, "utf8");
    } catch {
      key = (await acme.crypto.createPrivateEcdsaKey()).toString();
      writeSecret(keyFile, key);
    }
    let accountUrl: string | undefined;
    try {
      const info = JSON.parse(readFileSync(infoFile, "utf8"));
      if (info.directory === o.config.directory) accountUrl = info.url;
    } catch {
      // No account yet with this CA: auto() registers one.
    }
    client = new acme.Client({
      directoryUrl: o.config.directory,
      accountKey: key,
      ...(accountUrl ? { accountUrl } : {}),
      // Poll the order from 0.5 s on (the default starts at 5 s), growing to 10 s.
      backoffMin: 500,
      backoffMax: 10_000,
      backoffAttempts: 12,
    });
    return client;
  };

  const order = async (name: string): Promise<void> => {
    if (stopped) return;
    const renewing = o.tls.acmeCertificate(name) !== undefined;
    const started = performance.now();
    const tokens: string[] = [];
    try {
      const c = await account();
      const acme = await lib;
      const [key, csr] = await acme.crypto.createCsr({ altNames: [name] }, await acme.crypto.createPrivateEcdsaKey());
      const pem = await c.auto({
        csr,
        ...(o.config.email ? { email: o.config.email } : {}),
        termsOfServiceAgreed: true,
        challengePriority: ["http-01"],
        // The CA checks the challenge itself; a self-check through the local resolver would only
        // add a way to fail (split DNS, test names).
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
          tokens.push(challenge.token);
          await o.challenge(challenge.token, keyAuthorization);
        },
        challengeRemoveFn: async (_authz, challenge) => {
          await o.challenge(challenge.token, null);
        },
      });
      const files = acmeFiles(o.storage, name);
      const cert = parseCertificate(pem, key.toString(), { source: "acme", certFile: files.cert, keyFile: files.key });
      writeSecret(files.key, cert.key);
      writeSecret(files.cert, cert.cert);
      writeFileSync(join(o.storage, "account.json"), JSON.stringify({ directory: o.config.directory, url: c.getAccountUrl() }));
      o.tls.acmeIssued(name, cert);
      o.issued?.(name);
      failures.delete(name);
      o.log.info(renewing ? "certificate renewed over ACME" : "certificate obtained over ACME", {
        name,
        not_after: cert.notAfter.toISOString(),
        issuer: cert.issuer,
        duration_ms: Math.round(performance.now() - started),
      });
      schedule(name, dueAt(cert));
    } catch (e) {
      for (const t of tokens) await Promise.resolve(o.challenge(t, null)).catch(() => {});
      const n = (failures.get(name) ?? 0) + 1;
      failures.set(name, n);
      const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (n - 1)) * (0.9 + Math.random() * 0.2);
      // acme-client loses a network error once its retries are spent (a TypeError about
      // `response.config`): ask the directory ourselves for the reason.
      const error = (e as { response?: unknown }).response
        ? describe(e)
        : ((await unreachable(o.config.directory, o.trustedCa)) ?? describe(e));
      o.tls.acmeFailed(name, error);
      const serving = o.tls.acmeCertificate(name);
      o.log.error(
        serving
          ? "ACME renewal of {name} failed ({error}); the current certificate keeps serving; retrying in {retry_s}s"
          : "ACME order for {name} failed ({error}); handshakes for it are refused until it succeeds; retrying in {retry_s}s",
        { name, error, attempt: n, retry_s: Math.round(delay / 1000), directory: o.config.directory },
      );
      schedule(name, Date.now() + delay);
    }
  };

  for (const name of o.names) {
    const cert = o.tls.acmeCertificate(name);
    if (cert) o.log.info("certificate for {name} loaded from acme.storage", { name, not_after: cert.notAfter.toISOString() });
    schedule(name, cert ? dueAt(cert) : Date.now());
  }
  return {
    next,
    stop() {
      stopped = true;
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
    },
  };
}

/** Start ACME for the names of `config`'s TLS listeners, if any (else undefined). */
export function startAcmeFor(
  config: Config,
  tls: TlsManager,
  log: Logger,
  challenge: AcmeOptions["challenge"],
  issued?: AcmeOptions["issued"],
): AcmeRunner | undefined {
  const names = tls.acmeNames();
  if (names.length === 0) return undefined;
  return startAcme({
    config: config.acme ?? acmeSchema.parse({}),
    storage: tls.acmeStorage,
    trustedCa: tls.acmeTrustedCa,
    names,
    tls,
    log,
    challenge,
    ...(issued ? { issued } : {}),
  });
}

/** Write a file readable by this user only, replacing the old one in one step. */
function writeSecret(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Why the ACME directory cannot be fetched, or undefined when it can. */
function unreachable(directory: string, ca: string | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = https.get(directory, { timeout: 10_000, ...(ca !== undefined ? { ca } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 ? undefined : `the ACME directory ${directory} answered ${res.statusCode}`);
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 10s")));
    req.on("error", (e: NodeJS.ErrnoException) => resolve(`cannot reach the ACME directory ${directory}: ${e.code ?? e.message}`));
  });
}

/** An error from acme-client or axios, in one line: the CA's problem detail when there is one. */
function describe(e: unknown): string {
  const err = e as { message?: string; code?: string; response?: { data?: { detail?: string; type?: string } } };
  const detail = err.response?.data?.detail;
  if (detail) return `${err.response?.data?.type ?? "error"}: ${detail}`;
  return [err.code, err.message].filter(Boolean).join(" ") || String(e);
}
