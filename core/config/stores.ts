/**
 * The `stores` of the config: shared state for several instances (core/stores/ opens them), and
 * the URLs that name them. A store URL becomes connection settings here. `redis://` and `rediss://` are one server; a Sentinel set
 * and a Cluster list several hosts, which a WHATWG URL cannot hold:
 *
 *   redis://[user:password@]host[:port][/db]
 *   rediss://…, rediss+sentinel://…, rediss+cluster://…   (TLS)
 *   redis+sentinel://[user:password@]h1:26379,h2:26379/MASTER[/db]
 *   redis+cluster://[user:password@]h1:7000,h2:7001
 */

import { z } from "zod";
import { duration } from "./fields.ts";

export interface HostPort {
  host: string;
  port: number;
}

export type RedisTarget =
  | { kind: "single"; url: string }
  | { kind: "sentinel"; sentinels: HostPort[]; name: string; db: number; username?: string; password?: string; tls: boolean }
  | { kind: "cluster"; nodes: HostPort[]; username?: string; password?: string; tls: boolean };

const MULTI = /^(rediss?)\+(sentinel|cluster):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/]+)(?:\/([^/]*)(?:\/(\d+))?)?\/?$/;

function hosts(list: string, defaultPort: number): HostPort[] | undefined {
  const out: HostPort[] = [];
  for (const part of list.split(",")) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(part.trim());
    if (!m) return undefined;
    const port = m[2] === undefined ? defaultPort : Number(m[2]);
    if (port < 1 || port > 65535) return undefined;
    out.push({ host: m[1]!.replace(/^\[|\]$/g, ""), port });
  }
  return out.length ? out : undefined;
}

/** Parse a store URL; a string says what is wrong with it. */
export function parseRedisUrl(text: string): RedisTarget | string {
  if (/^rediss?:\/\//.test(text)) {
    try {
      const u = new URL(text);
      if (!u.hostname) return "has no host";
      if (u.pathname.length > 1 && !/^\/\d+$/.test(u.pathname)) return "path must be a database number such as /0";
      return { kind: "single", url: text };
    } catch {
      return "is not a valid URL";
    }
  }
  const m = MULTI.exec(text);
  if (!m) return "must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL";
  const tls = m[1] === "rediss";
  const auth = {
    ...(m[3] ? { username: decodeURIComponent(m[3]) } : {}),
    ...(m[4] !== undefined ? { password: decodeURIComponent(m[4]) } : {}),
  };
  if (m[2] === "sentinel") {
    const sentinels = hosts(m[5]!, 26379);
    if (!sentinels) return "must list sentinels as host:port,host:port";
    if (!m[6]) return "must name the master after the hosts: redis+sentinel://h1:26379,h2:26379/mymaster";
    return { kind: "sentinel", sentinels, name: decodeURIComponent(m[6]), db: Number(m[7] ?? 0), ...auth, tls };
  }
  const nodes = hosts(m[5]!, 6379);
  if (!nodes) return "must list nodes as host:port,host:port";
  if (m[6] || m[7]) return "takes no database: a Redis Cluster has only database 0";
  return { kind: "cluster", nodes, ...auth, tls };
}

const TIMEOUT = "must be a duration from 1ms to 10s, like 50ms";

/** One store: `{ redis: URL, prefix, timeout, on_error, batch }`. */
export const storeSchema = z.strictObject(
  {
    redis: z.string({ error: "must be a redis:// URL" }).superRefine((v, ctx) => {
      const r = parseRedisUrl(v);
      if (typeof r === "string") ctx.addIssue({ code: "custom", message: r });
    }),
    /** Prepended to every key Fulcrum writes, so that several fleets can share one Redis. */
    prefix: z.string({ error: "must be a string" }).default("fulcrum:"),
    /** The longest a request waits for the store; past it, `on_error` decides. */
    timeout: duration.refine((ms) => ms >= 1 && ms <= 10_000, { error: TIMEOUT }).default(50),
    /** What a request gets while the store is unreachable or slow: allowed through, or 503. */
    on_error: z.enum(["allow", "deny"], { error: 'must be "allow" or "deny"' }).default("allow"),
    /** Coalesce concurrent decisions for one key into one round trip (false: one round trip per request). */
    batch: z.boolean({ error: "must be true or false" }).default(true),
  },
  { error: "must be a map with redis, prefix, timeout, on_error and batch" },
);

export const storesSchema = z.record(
  z.string().regex(/^[A-Za-z0-9_.-]+$/, { error: "store names are letters, digits, _ . -" }),
  storeSchema,
  { error: "must be a map of store name: { redis: URL }" },
);

export type StoreConfig = z.output<typeof storeSchema>;
