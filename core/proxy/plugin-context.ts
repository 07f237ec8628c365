/** What a plugin's create() gets as `api`: other plugins by name, a logger and a tracer with its name. */
import type { PluginApi, PluginLogger } from "../plugins/api.ts";
import type { Registry } from "../plugins/registry.ts";
import type { Logging } from "../telemetry/log.ts";
import { NOOP_PLUGIN_TRACER, type Observer } from "../telemetry/observer.ts";
import type { StoreSet } from "../stores/set.ts";

function pluginLogger(logging: Logging, name: string): PluginLogger {
  const l = logging.logger.getChild(["plugin", name]);
  return {
    debug: (m, p) => l.debug(m, p ?? {}),
    info: (m, p) => l.info(m, p ?? {}),
    warn: (m, p) => l.warn(m, p ?? {}),
    error: (m, p) => l.error(m, p ?? {}),
  };
}

/** The `api` argument of a plugin's create(): other plugins by name, and a logger with its name. */
export function pluginApi(registry: Registry, logging: Logging, name: string, observer?: Observer, stores?: StoreSet): PluginApi {
  const api: PluginApi = {
    strategy: (n, options) => registry.createStrategy(n, options ?? {}, api),
    key: (n, options) => registry.createKey(n, options ?? {}, api),
    log: pluginLogger(logging, name),
    tracer: observer?.pluginTracer(name) ?? NOOP_PLUGIN_TRACER,
  };
  // The config's stores, for the built-in rate-limit (not part of the public plugin API yet).
  if (stores) Object.assign(api, { store: (n: string) => stores.get(n) });
  return api;
}
