/**
 * Plugins registered by name: built-ins and user plugins go through the same door. A config's
 * user plugins go into a {@link Registry.fork} of the built-ins, so a reload starts clean.
 */
import type {
  DiscoveryApi,
  DiscoveryPlugin,
  DiscoverySource,
  KeyPlugin,
  Middleware,
  MiddlewarePlugin,
  Plugin,
  PluginApi,
  RequestInfo,
  Strategy,
  StrategyPlugin,
  Transform,
} from "./api.ts";
import { didYouMean } from "../config/units.ts";

type Kind = Plugin["kind"];
const KINDS: readonly Kind[] = ["strategy", "middleware", "key", "discovery"];
/** The kinds as error messages list them. */
export const KIND_LIST = `"strategy" | "middleware" | "key" | "discovery"`;

interface Entry {
  readonly plugin: Plugin;
  /** `built-in` or the file it came from, for duplicate-name messages. */
  readonly source: string;
}

/** Whether `value` has the shape of a plugin's default export (any kind). */
export function isPlugin(value: unknown): value is Plugin {
  const p = value as Plugin | undefined;
  return !!p && typeof p === "object" && KINDS.includes(p.kind) && typeof p.name === "string" && p.name !== "" &&
    typeof p.create === "function";
}

export class Registry {
  readonly #plugins: Record<Kind, Map<string, Entry>>;

  constructor(from?: Registry) {
    const base = from ? from.#plugins : undefined;
    this.#plugins = {
      strategy: new Map(base?.strategy),
      middleware: new Map(base?.middleware),
      key: new Map(base?.key),
      discovery: new Map(base?.discovery),
    };
  }

  /** A copy to add a config's user plugins to, leaving this one (the built-ins) untouched. */
  fork(): Registry {
    return new Registry(this);
  }

  /** Register a plugin of any kind. A second plugin of that kind with the same name is an error. */
  register(plugin: Plugin, source = "built-in"): void {
    if (!isPlugin(plugin)) {
      throw new TypeError(`${source}: a plugin must export { kind: ${KIND_LIST}, name, create }`);
    }
    const map = this.#plugins[plugin.kind];
    const existing = map.get(plugin.name);
    if (existing) {
      throw new Error(`a ${plugin.kind} named "${plugin.name}" is already registered (${existing.source}); plugin names must be unique`);
    }
    map.set(plugin.name, { plugin, source });
  }

  /** Register a strategy plugin (kept for the built-ins' wiring in main.ts). */
  registerStrategy(plugin: StrategyPlugin<never>, source = "built-in"): void {
    if (plugin?.kind !== "strategy") throw new TypeError(`${source}: a strategy plugin must export { kind: "strategy", name, create }`);
    this.register(plugin, source);
  }

  names(kind: Kind): string[] {
    return [...this.#plugins[kind].keys()];
  }

  strategyNames(): string[] {
    return this.names("strategy");
  }

  middlewareNames(): string[] {
    return this.names("middleware");
  }

  /** Whether a plugin came from a user's file rather than the binary. */
  isBuiltin(kind: Kind, name: string): boolean {
    return this.#plugins[kind].get(name)?.source === "built-in";
  }

  #get(kind: Kind, name: string): Plugin {
    const entry = this.#plugins[kind].get(name);
    if (!entry) {
      const hint = didYouMean(name, this.#plugins[kind].keys());
      throw new UnknownName(`unknown ${kind} "${name}"${hint ? `; did you mean "${hint}"?` : ""} (known: ${this.names(kind).join(", ")})`);
    }
    return entry.plugin;
  }

  /** Instantiate a registered strategy; an unknown name lists the known ones. */
  createStrategy(name: string, options: unknown, api: PluginApi): Strategy {
    const strategy = create(() => (this.#get("strategy", name) as StrategyPlugin<never>).create((options ?? {}) as never, api));
    if (!strategy || typeof strategy.pick !== "function") {
      throw new TypeError(`strategy "${name}": create() must return an object with a pick() method, got ${describe(strategy)}`);
    }
    return strategy;
  }

  /** Instantiate a registered middleware: a function, or a {@link Transform} object. */
  createMiddleware(name: string, options: unknown, api: PluginApi): Middleware | Transform {
    const mw = create(() => (this.#get("middleware", name) as MiddlewarePlugin<never>).create((options ?? {}) as never, api));
    if (typeof mw !== "function" && !isTransform(mw)) {
      throw new TypeError(
        `middleware "${name}": create() must return a function (c, next) => … or a transform { request?, response? }, got ${describe(mw)}`,
      );
    }
    return mw;
  }

  /** Instantiate a registered key function. */
  createKey(name: string, options: unknown, api: PluginApi): (request: RequestInfo) => string | undefined {
    const fn = create(() => (this.#get("key", name) as KeyPlugin<never>).create((options ?? {}) as never, api));
    if (typeof fn !== "function")
      throw new TypeError(`key "${name}": create() must return a function (request) => string, got ${describe(fn)}`);
    return fn;
  }
  /**
   * Instantiate a registered discovery source: an async iterable or a subscription of backend
   * lists (core/discovery/ consumes it).
   */
  createDiscovery(name: string, options: unknown, api: DiscoveryApi): DiscoverySource {
    const source = create(() => (this.#get("discovery", name) as DiscoveryPlugin<never>).create((options ?? {}) as never, api));
    const s = source as Partial<AsyncIterable<unknown> & { subscribe: unknown }> | undefined;
    if (!s || (typeof s[Symbol.asyncIterator] !== "function" && typeof s.subscribe !== "function")) {
      throw new TypeError(
        `discovery "${name}": create() must return an async iterable of backend lists or { subscribe(update, fail) }, got ${
          describe(source)
        }`,
      );
    }
    return source;
  }
}

/** Run a plugin's create(); what it throws (bad options) is reported as such. */
function create<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UnknownName) throw e;
    throw new Error(`create() failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

class UnknownName extends Error {}

/** An object with a request and/or response hook and nothing else that is not a function. */
export function isTransform(value: unknown): value is Transform {
  if (!value || typeof value !== "object" || Array.isArray(value)) return false;
  const t = value as Transform;
  const hooks = [t.request, t.response].filter((h) => h !== undefined);
  return hooks.length > 0 && hooks.every((h) => typeof h === "function");
}

function describe(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}
