/**
 * Open the stores of a config. The Redis client is imported here, lazily: a config without
 * `stores` never loads it (~5 MB of an idle process, and its start-up time).
 */
import { parseRedisUrl, type StoreConfig } from "../config/stores.ts";
import { StoreSet, type StoreLogger } from "./set.ts";

export async function openStores(configs: Record<string, StoreConfig>, log: StoreLogger): Promise<StoreSet> {
  const { connectRedis } = await import("./redis.ts");
  return new StoreSet(configs, (c, onError) => {
    const target = parseRedisUrl(c.redis);
    // The schema has checked the URL already.
    if (typeof target === "string") throw new Error(`redis ${target}`);
    return connectRedis(target, onError);
  }, log);
}

/**
 * The stores a config declares, for start-up (`previous` undefined) or a reload (unchanged stores
 * are `previous`'s, with their connections; new and changed ones are opened). A store that is not
 * reachable yet is not fatal: `on_error` decides its requests until it is, as during an outage.
 * Undefined when the config declares none.
 */
export async function openConfigStores(
  configs: Record<string, StoreConfig> | undefined,
  log: StoreLogger,
  previous?: StoreSet,
): Promise<StoreSet | undefined> {
  if (!configs || Object.keys(configs).length === 0) return undefined;
  const stores = previous ? previous.next(configs) : await openStores(configs, log);
  const opened = stores.openedSince(previous);
  if (opened.length === 0) return stores;
  const wait = Math.max(...opened.map((n) => configs[n]!.timeout), 1000);
  const down = await stores.waitReady(wait, opened);
  if (down.length) log.warning("stores not reachable yet: {stores}; on_error decides until they are", { stores: down });
  return stores;
}
