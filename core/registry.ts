/** Strategies registered by name: built-ins and user plugins go through the same door. */
import type { PluginApi, Strategy, StrategyPlugin } from "./plugin-api.ts";
import { didYouMean } from "./config/units.ts";

export class Registry {
  readonly #strategies = new Map<string, StrategyPlugin<never>>();

  /** Register a strategy plugin. A second plugin with the same name is an error. */
  registerStrategy(plugin: StrategyPlugin<never>, source = "built-in"): void {
    if (plugin?.kind !== "strategy" || typeof plugin.name !== "string" || typeof plugin.create !== "function") {
      throw new TypeError(`${source}: a strategy plugin must export { kind: "strategy", name, create }`);
    }
    if (this.#strategies.has(plugin.name)) {
      throw new Error(`${source}: a strategy named "${plugin.name}" is already registered`);
    }
    this.#strategies.set(plugin.name, plugin);
  }

  strategyNames(): string[] {
    return [...this.#strategies.keys()];
  }

  /** Instantiate a registered strategy; an unknown name lists the known ones. */
  createStrategy(name: string, options: unknown, api: PluginApi): Strategy {
    const plugin = this.#strategies.get(name);
    if (!plugin) {
      const hint = didYouMean(name, this.#strategies.keys());
      throw new Error(
        `unknown strategy "${name}"${hint ? `; did you mean "${hint}"?` : ""} (known: ${this.strategyNames().join(", ")})`,
      );
    }
    const strategy = plugin.create(options as never, api);
    if (!strategy || typeof strategy.pick !== "function") {
      throw new TypeError(`strategy "${name}": create() must return an object with a pick() method`);
    }
    return strategy;
  }
}
