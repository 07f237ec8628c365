/**
 * The admin API can drain backends, change weights and reload the config: on an address other
 * than loopback it needs a token, unless the operator says in so many words that it does not.
 */
import type { Config } from "./schema.ts";

/** Environment variable that supplies the admin token when `admin.token` is not set. */
export const ADMIN_TOKEN_ENV = "FULCRUM_ADMIN_TOKEN";

/** 127.0.0.0/8 (also IPv4-mapped), ::1, and `localhost`. */
export function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** The token the admin API will require: `admin.token`, else the environment's, else none. */
export function adminToken(config: Config, env: (name: string) => string | undefined): string | undefined {
  return config.admin.token ?? (env(ADMIN_TOKEN_ENV) || undefined);
}

/**
 * An admin listener on a non-loopback address with no token and no `admin.insecure: true`: the
 * problem, at `admin.listen`. Empty when the admin API is off, on loopback, or protected.
 */
export function adminExposure(config: Config, env: (name: string) => string | undefined): { path: string[]; message: string }[] {
  const a = config.admin;
  if (!a.enabled || !a.listen || isLoopback(a.listen.hostname) || a.insecure || adminToken(config, env) !== undefined) return [];
  const host = a.listen.hostname.includes(":") ? `[${a.listen.hostname}]` : a.listen.hostname;
  return [{
    path: ["admin", "listen"],
    message: `${host}:${a.listen.port} is not a loopback address, so it needs admin.token (or ${ADMIN_TOKEN_ENV}), ` +
      "or admin.insecure: true to serve the admin API there without one",
  }];
}
