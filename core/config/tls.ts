/**
 * The config keys of TLS: the listeners (`listen` as one address or a list of plain, TLS and
 * redirect listeners), the ACME account (`acme`) and TLS to backends (`pools.<name>.tls`).
 * Paths stay as written; they resolve against the config file's folder when read (core/tls/).
 */
import { z } from "zod";
import { parseDuration, parseListen } from "./units.ts";
import { listenersOf } from "./defaults.ts";
import { type Http2Config, listenerHttp2Keys } from "./protocols.ts";

const DURATION = "must be a duration like 250ms, 5s or 1m";
const duration = z
  .string({ error: DURATION })
  .refine((s) => parseDuration(s) !== undefined, { error: DURATION })
  .transform((s) => parseDuration(s)!);

const file = (what = "must be a path to a PEM file") => z.string({ error: what }).min(1, { error: what });

const ADDRESS = "must be host:port, :port or a port number (0-65535)";
const address = z
  .union([z.string(), z.number()], { error: ADDRESS })
  .refine((s) => parseListen(s) !== undefined, { error: ADDRESS })
  .transform((s) => parseListen(s)!);

/** A DNS name as certificates carry it (no wildcard: http-01 cannot prove one). */
function isDnsName(s: string): boolean {
  return s.length <= 253 && /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(s);
}

const VERSION = 'must be "1.2" or "1.3" (TLS 1.0 and 1.1 are always refused)';
export const ALPN = ["h2", "http/1.1"] as const;

const tlsListener = z
  .strictObject(
    {
      /** PEM files, relative to the config's folder; the first is served to clients that name no host or an unknown one. */
      certificates: z
        .array(
          z.strictObject({ cert: file(), key: file() }, { error: "must be { cert: FILE, key: FILE }" }),
          { error: "must be a list of { cert: FILE, key: FILE }" },
        )
        .default([]),
      /** Names whose certificates Fulcrum obtains and renews itself over ACME (http-01). */
      acme: z
        .array(
          z.string({ error: "must be a DNS name" }).refine(isDnsName, {
            error: "must be a DNS name like example.com (wildcards need dns-01, which Fulcrum does not do)",
          }),
          { error: "must be a list of DNS names" },
        )
        .default([]),
      min_version: z
        .union([z.string(), z.number()], { error: VERSION })
        .transform((v) => (typeof v === "number" ? v.toFixed(1) : v))
        .pipe(z.enum(["1.2", "1.3"], { error: VERSION }))
        .default("1.2"),
      /** Protocols offered by ALPN, the server's preference first: h2 serves HTTP/2 (core/http2/), with the listener's `http2` settings. */
      alpn: z
        .array(z.enum(ALPN, { error: `must be one of ${ALPN.join(", ")}` }), { error: "must be a list of protocols" })
        .default([...ALPN]),
      /** Require client certificates signed by this CA (mTLS). */
      client_ca: file().optional(),
      /** A client that has not finished its handshake this long after connecting is closed. */
      handshake_timeout: duration.refine((ms) => ms > 0, { error: "must be more than 0" }).default(10_000),
      /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are all strong); default: forward-secret AEAD only. */
      ciphers: z.string({ error: "must be an OpenSSL cipher list" }).min(1).optional(),
    },
    { error: "must be a map with certificates and/or acme" },
  )
  .refine((t) => t.certificates.length + t.acme.length > 0, { error: "needs at least one of certificates or acme" })
  .refine((t) => t.alpn.length > 0, { error: "alpn must list at least one protocol" });

export type TlsListenerConfig = z.output<typeof tlsListener>;

const entry = z.preprocess(
  (v) => (typeof v === "string" || typeof v === "number" ? { address: v } : v),
  z
    .strictObject(
      {
        address,
        tls: tlsListener.optional(),
        ...listenerHttp2Keys,
        /** Answer every request with 308 to https://host:PORT/same-path. */
        redirect_https: z
          .number({ error: "must be the HTTPS port to redirect to" })
          .int({ error: "must be a port number" })
          .min(1, { error: "must be a port number" })
          .max(65535, { error: "must be a port number" })
          .optional(),
      },
      { error: "must be an address or a map with address, tls, redirect_https, h2c or http2" },
    )
    .refine((e) => !(e.tls && e.redirect_https), { error: "cannot have both tls and redirect_https" })
    .refine((e) => !(e.h2c && (e.tls || e.redirect_https)), {
      error: "h2c is for plain listeners (a TLS listener offers HTTP/2 by ALPN: tls.alpn)",
    })
    .transform((e) => ({
      hostname: e.address.hostname,
      port: e.address.port,
      tls: e.tls,
      redirect_https: e.redirect_https,
      h2c: e.h2c,
      http2: e.http2,
    })),
);

/** One listener: a plain one has neither `tls` nor `redirect_https`. */
export interface ListenerConfig {
  hostname: string;
  port: number;
  tls?: TlsListenerConfig | undefined;
  redirect_https?: number | undefined;
  /** HTTP/2 with prior knowledge on a plain listener. */
  h2c?: boolean | undefined;
  /** HTTP/2 settings (h2c, and ALPN h2 on TLS). */
  http2?: Http2Config | undefined;
}

/** `listen`: the first listener's fields, and the others (if any) in `also`. Code that knows one port reads the first. */
export type ListenConfig = ListenerConfig & { also?: ListenerConfig[] };

/**
 * `listen`: an address (one plain listener), one listener's map, or a list of listeners. An
 * address or a map becomes a list of one here, so problems in a list keep their paths (listen[1].tls.min_version); a bad address is
 * reported on `listen` itself.
 */
export const listenSchema = z
  .preprocess(
    (v, ctx) => {
      // One listener written as a map (`listen: { address: :8080, h2c: true }`) is a list of one.
      if (v !== null && typeof v === "object" && !Array.isArray(v)) return [v];
      if (typeof v !== "string" && typeof v !== "number") return v;
      if (parseListen(v) !== undefined) return [v];
      ctx.addIssue({ code: "custom", message: ADDRESS, input: v });
      return [0];
    },
    z
      .array(entry, { error: "must be host:port, :port, a port number, or a list of listeners" })
      .min(1, { error: "must list at least one listener" }),
  )
  .superRefine((v, ctx) => {
    const acme = v.some((e) => (e.tls?.acme.length ?? 0) > 0);
    if (acme && !v.some((e) => !e.tls)) {
      ctx.addIssue({ code: "custom", message: "has tls.acme names but no plain HTTP listener to answer their http-01 challenges on" });
    }
    const seen = new Set<string>();
    v.forEach((e, i) => {
      const key = `${e.hostname}:${e.port}`;
      if (e.port !== 0 && seen.has(key)) ctx.addIssue({ code: "custom", path: [i], message: `listens on ${key} twice` });
      seen.add(key);
    });
  })
  .transform((v): ListenConfig => (v.length === 1 ? v[0]! : { ...v[0]!, also: v.slice(1) }));

export { listenersOf };

/** One line for `fulcrum check`. */
export function describeListener(l: ListenerConfig): string {
  const t = l.tls;
  const what = t
    ? ` TLS ${t.min_version}+, ${t.certificates.length} certificate file(s)${t.acme.length ? `, ACME ${t.acme.join(" ")}` : ""}` +
      `${t.client_ca ? ", client certificates required" : ""}`
    : l.redirect_https !== undefined
    ? ` redirects to https port ${l.redirect_https}`
    : "";
  return `listen: ${l.hostname}:${l.port}${what}`;
}

/** `acme`: the account and CA shared by every listener's `tls.acme` names. */
export const acmeSchema = z.strictObject(
  {
    email: z.string({ error: "must be an e-mail address" }).refine((s) => /^[^@\s]+@[^@\s]+$/.test(s), {
      error: "must be an e-mail address",
    }).optional(),
    directory: z
      .string({ error: "must be the https:// URL of an ACME directory" })
      .refine((s) => /^https?:\/\/[^/\s]+/i.test(s), { error: "must be the https:// URL of an ACME directory" })
      .default("https://acme-v02.api.letsencrypt.org/directory"),
    /** An extra CA to trust when talking to the directory (a test CA such as Pebble's). */
    trusted_ca: file().optional(),
    /** Account key and certificates, reused across restarts. */
    storage: z.string({ error: "must be a folder path" }).min(1).default("./acme"),
    /** Renew this long before expiry; default a third of the certificate's lifetime. */
    renew_before: duration.optional(),
  },
  { error: "must be a map with email, directory, trusted_ca, storage and renew_before" },
);

export type AcmeConfig = z.output<typeof acmeSchema>;

/** `pools.<name>.tls`: how `https://` backends are verified (and the client certificate for mTLS to them). */
export const backendTlsSchema = z
  .strictObject(
    {
      /** Trust this CA (PEM) instead of the system's. */
      ca: file().optional(),
      /** The name to send as SNI and to verify the certificate against; default the URL's host. */
      server_name: z.string({ error: "must be a host name" }).min(1).optional(),
      /** Accept any certificate (tests only: the connection is then open to interception). */
      insecure_skip_verify: z.boolean({ error: "must be true or false" }).default(false),
      cert: file().optional(),
      key: file().optional(),
    },
    { error: "must be a map with ca, server_name, insecure_skip_verify, cert and key" },
  )
  .refine((t) => (t.cert === undefined) === (t.key === undefined), { error: "needs cert and key together (client certificate)" });

export type BackendTlsConfig = z.output<typeof backendTlsSchema>;
