/**
 * One Redis connection (or Sentinel set, or Cluster) through ioredis, set up for a proxy's hot
 * path: commands are never queued while disconnected (they fail at once and `on_error` decides),
 * a connection lost mid-command fails that command instead of retrying it, and reconnection
 * backs off exponentially with jitter up to 2 s. This module imports ioredis; `open.ts` loads it
 * only when a config declares a store.
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { RedisTarget } from "../config/stores.ts";
import { type BatchResult, GCRA_LUA } from "./gcra.ts";

type Client = Redis | Cluster;
type WithGcra = Client & {
  fulcrumGcra(key: string, interval: string, burst: string, n: string): Promise<[number, number, number, number]>;
};

/** Reconnect after 50 ms, 100 ms, 200 ms … at most 2 s, each with up to 25% jitter. */
export function backoffMs(attempt: number, random = Math.random): number {
  const base = Math.min(2000, 50 * 2 ** Math.min(attempt, 10));
  return Math.round(base * (0.75 + random() * 0.25));
}

export interface RedisConnection {
  /** Connected and able to take commands right now. */
  ready(): boolean;
  /** One GCRA decision for `n` requests on `key`. */
  gcra(key: string, intervalMs: number, burst: number, n: number): Promise<BatchResult>;
  /** PING, for `fulcrum check`. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Connect to `target`; `onError` hears connection errors (the caller rate-limits the logging). */
export function connectRedis(target: RedisTarget, onError: (e: Error) => void): RedisConnection {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    retryStrategy: (times) => backoffMs(times - 1),
  };
  let client: Client;
  if (target.kind === "single") client = new Redis(target.url, common);
  else if (target.kind === "sentinel") {
    client = new Redis({
      ...common,
      sentinels: target.sentinels,
      name: target.name,
      db: target.db,
      username: target.username,
      password: target.password,
      ...(target.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
      sentinelRetryStrategy: (times) => backoffMs(times - 1),
    });
  } else {
    client = new Cluster(target.nodes, {
      enableOfflineQueue: false,
      clusterRetryStrategy: (times) => backoffMs(times - 1),
      redisOptions: {
        ...common,
        username: target.username,
        password: target.password,
        ...(target.tls ? { tls: {} } : {}),
      },
    });
  }
  client.on("error", onError);
  // Load the script on every (re)connection, so the first decision is one EVALSHA, not a
  // NOSCRIPT answer and then an EVAL (a Cluster loads it on each node at first use instead).
  if (target.kind !== "cluster") client.on("ready", () => void (client as Redis).script("LOAD", GCRA_LUA).catch(() => {}));
  client.defineCommand("fulcrumGcra", { numberOfKeys: 1, lua: GCRA_LUA });
  const c = client as WithGcra;
  return {
    ready: () => client.status === "ready",
    async gcra(key, intervalMs, burst, n) {
      const r = await c.fulcrumGcra(key, String(intervalMs), String(burst), String(n));
      return { granted: r[0], remaining: r[1], retryAfterMs: r[2], resetMs: r[3] };
    },
    async ping() {
      await client.ping();
    },
    async close() {
      client.disconnect();
    },
  };
}
