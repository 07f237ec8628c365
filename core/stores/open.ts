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
