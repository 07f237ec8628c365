/**
 * TLS on `Bun.listen` with certificates chosen by SNI and replaced while serving.
 *
 * `Bun.listen({ tls })` takes one certificate. Two things Bun's own `node:tls` server is built
 * on make it an SNI server without leaving `Bun.listen` (measured faster than `node:tls` and
 * `Bun.serve`, docs/tls.md):
 * - a `serverName(data, servername)` socket handler, called on each ClientHello that names a
 *   host, returning the native context of a `tls.createSecureContext()` (or an Error, which
 *   refuses the handshake);
 * - the listener's default context (clients without SNI) replaced by `tls.Server`'s
 *   `setSecureContext` applied to our listener handle, as `node:tls` does to its own.
 * Neither is in Bun's types; tests/tls/ pin both down, so a Bun upgrade that drops them fails there.
 */
import type tls from "node:tls";
import type { ServeTls, TlsCertificate } from "./types.ts";

type NativeContext = unknown;

// node:tls (~10 ms of CPU to load) only for a TLS listener: a static import would load it at
// every start, since bun-listener.ts serves plain ports too.
const nodeTls = () => process.getBuiltinModule("node:tls") as typeof tls;

const VERSION = { "1.2": "TLSv1.2", "1.3": "TLSv1.3" } as const;
/** Bun.listen's own option takes OpenSSL's numbers, as its node:tls passes them. */
const VERSION_NUMBER = { "1.2": 0x0303, "1.3": 0x0304 } as const;

/** The options of a secure context: the certificate, and the listener's rules (a context picked by SNI replaces the default one). */
function contextOptions(
  t: ServeTls,
  c: TlsCertificate,
): tls.SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean } {
  return {
    cert: c.cert,
    key: c.key,
    minVersion: VERSION[t.minVersion],
    maxVersion: "TLSv1.3",
    ciphers: t.ciphers,
    honorCipherOrder: true,
    ...(t.clientCa !== undefined ? { ca: t.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
  };
}

/** ALPN protocol names in their wire form (length-prefixed). */
function alpnWire(protocols: readonly string[]): Buffer {
  return Buffer.concat(protocols.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, "latin1")])));
}

/** What `Bun.listen` needs for a TLS port: its `tls` option, the `serverName` handler, and a hook for the listener once bound. */
export function bunTls(t: ServeTls): {
  options: Record<string, unknown>;
  serverName: (data: unknown, servername: string) => NativeContext | Error | undefined;
  bound: (listener: unknown) => void;
} {
  // One native context per certificate object: a rotated certificate is a new object.
  const contexts = new WeakMap<TlsCertificate, NativeContext>();
  const context = (c: TlsCertificate): NativeContext => {
    let ctx = contexts.get(c);
    if (ctx === undefined) {
      ctx = (nodeTls().createSecureContext(contextOptions(t, c)) as unknown as { context: NativeContext }).context;
      contexts.set(c, ctx);
    }
    return ctx;
  };
  const first = t.defaultCertificate();
  const options: Record<string, unknown> = {
    // Without a certificate (ACME names only, before the first order) the port still speaks TLS:
    // named hosts get theirs through serverName; clients without SNI fail their handshake.
    ...(first !== undefined ? { secureContext: context(first) } : {}),
    minVersion: VERSION_NUMBER[t.minVersion],
    maxVersion: VERSION_NUMBER["1.3"],
    ciphers: t.ciphers,
    ALPNProtocols: alpnWire(t.alpn),
    ...(t.clientCa !== undefined ? { ca: t.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
  };
  let handle: unknown;
  t.onDefaultChange(() => {
    const c = t.defaultCertificate();
    if (handle === undefined || c === undefined) return;
    // node:tls's Server replaces its listener's context through its `_handle`; give it ours.
    const server = new (nodeTls().Server)() as tls.Server & { _handle: unknown; _requestCert?: boolean; _rejectUnauthorized?: boolean };
    server._handle = handle;
    if (t.clientCa !== undefined) {
      server._requestCert = true;
      server._rejectUnauthorized = true;
    }
    server.setSecureContext(contextOptions(t, c));
    server._handle = undefined;
  });
  return {
    options,
    serverName(_data, servername) {
      const c = t.select(servername);
      return c instanceof Error ? c : context(c);
    },
    bound(listener) {
      handle = listener;
    },
  };
}
