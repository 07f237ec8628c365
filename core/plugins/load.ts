/**
 * Loading a config's user plugins: find every `plugin:` reference, import each file once
 * (relative paths resolve against the config file's folder), check its default export, and
 * register it in a fork of the built-in registry. Every problem is collected and reported at
 * once, each pointing at the config line that named the plugin.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { ConfigError, configSource } from "../config/source.ts";
import type { Config } from "../config/schema.ts";
import type { Plugin } from "./api.ts";
import { isPlugin, KIND_LIST, type Registry } from "./registry.ts";
import { PluginImportError, type Runtime } from "../runtime/types.ts";

type Kind = Plugin["kind"];

interface Reference {
  readonly kind: Kind;
  /** The path as written in the config. */
  readonly file: string;
  readonly abs: string;
  /** `config.yaml:line:col: routes[0].middleware[1]` */
  readonly where: string;
  /** Called with the registered name once the plugin is loaded. */
  readonly bind: (name: string) => void;
}

export interface LoadedPlugins {
  /** The built-ins plus this config's plugins. */
  readonly registry: Registry;
  /** Every file the plugins were built from (plugin files and their local imports). */
  readonly files: readonly string[];
  /** Registered name → the plugin file it came from, for the user plugins of this config. */
  readonly fromFile: ReadonlyMap<string, string>;
}

/** Plugins that failed to load; `loaded` holds those that did (their references are bound). */
export class PluginLoadError extends ConfigError {
  constructor(problems: string[], readonly loaded: LoadedPlugins) {
    super(problems);
    this.name = "PluginLoadError";
  }
}

export interface LoadOptions {
  runtime: Pick<Runtime, "importPlugin" | "cwd">;
  /** The built-ins; it is forked, never changed. */
  registry: Registry;
  /** Re-read plugin files (reload). */
  fresh: boolean;
}

/**
 * Load the plugins `config` refers to. Binds each reference to the registered name in place
 * (`strategy.name`, `middleware[].name`, `key: { name }`), so building the gateway needs no paths.
 * Throws {@link PluginLoadError} listing every problem; the references that failed stay unbound.
 */
export async function loadPlugins(config: Config, options: LoadOptions): Promise<LoadedPlugins> {
  const source = configSource(config);
  const base = dirname(resolve(options.runtime.cwd(), source.file));
  const refs: Reference[] = [];
  const ref = (kind: Kind, file: string, path: (string | number)[], bind: (name: string) => void) => {
    const label = path.map((p, i) => (typeof p === "number" ? `[${p}]` : i ? `.${p}` : p)).join("");
    refs.push({
      kind,
      file,
      abs: isAbsolute(file) ? file : resolve(base, file),
      where: `${source.at(path)}: ${label}: plugin ${file}`,
      bind,
    });
  };

  for (const [name, pool] of Object.entries(config.pools)) {
    const s = pool.strategy;
    if (s.plugin !== undefined) ref("strategy", s.plugin, ["pools", name, "strategy"], (n) => (s.name = n));
    const d = pool.discovery;
    if (d?.plugin !== undefined) ref("discovery", d.plugin, ["pools", name, "discovery"], (n) => (d.name = n));
  }
  config.routes?.forEach((route, i) => {
    route.middleware.forEach((m, j) => {
      if (m.plugin !== undefined) ref("middleware", m.plugin, ["routes", i, "middleware", j], (n) => (m.name = n));
      // A built-in middleware may take a key function from a plugin (rate-limit's `key`).
      const opts = m.options;
      if (typeof opts !== "object") return;
      const key = opts.key as { plugin?: unknown; options?: unknown } | undefined;
      if (key && typeof key === "object" && typeof key.plugin === "string") {
        const path = m.plugin === undefined
          ? ["routes", i, "middleware", j, m.name!, "key"]
          : ["routes", i, "middleware", j, "options", "key"];
        ref("key", key.plugin, path, (n) => (opts.key = { name: n, options: key.options ?? {} }));
      }
    });
  });

  const registry = options.registry.fork();
  if (refs.length === 0) return { registry, files: [], fromFile: new Map() };

  const problems: string[] = [];
  const files = new Set<string>();
  const imports = new Map<string, Promise<Plugin | string>>();
  for (const r of refs) {
    if (!imports.has(r.abs)) imports.set(r.abs, importOne(options.runtime, r.abs, options.fresh, files));
  }
  const registered = new Map<string, Plugin>();
  const fromFile = new Map<string, string>();
  for (const r of refs) {
    const result = await imports.get(r.abs)!;
    if (typeof result === "string") {
      problems.push(`${r.where}: ${result}`);
      continue;
    }
    if (result.kind !== r.kind) {
      problems.push(`${r.where}: is a ${result.kind} plugin ("${result.name}"), but a ${r.kind} plugin is needed here`);
      continue;
    }
    if (registered.get(r.abs) !== result) {
      try {
        registry.register(result, r.file);
        registered.set(r.abs, result);
        fromFile.set(result.name, r.abs);
      } catch (e) {
        problems.push(`${r.where}: ${(e as Error).message}`);
        continue;
      }
    }
    r.bind(result.name);
  }
  if (problems.length) throw new PluginLoadError(problems, { registry, files: [...files], fromFile });
  return { registry, files: [...files], fromFile };
}

/** Import one file and check its default export; a string is the problem to report. */
async function importOne(runtime: LoadOptions["runtime"], abs: string, fresh: boolean, files: Set<string>): Promise<Plugin | string> {
  let module: Record<string, unknown>;
  try {
    const imported = await runtime.importPlugin(abs, { fresh });
    module = imported.module;
    for (const f of imported.files) files.add(f);
  } catch (e) {
    files.add(abs); // watch it anyway, so fixing it triggers a reload
    return e instanceof PluginImportError ? e.message : `failed while loading: ${(e as Error)?.message ?? String(e)}`;
  }
  const plugin = module.default;
  if (plugin === undefined) {
    const named = Object.keys(module).filter((k) => k !== "default");
    return `has no default export; expected \`export default { kind: ${KIND_LIST}, name, create }\`` +
      (named.length ? ` (found named exports: ${named.join(", ")})` : "");
  }
  if (!isPlugin(plugin)) {
    const p = plugin as Record<string, unknown> | null;
    const got = p && typeof p === "object"
      ? `{ kind: ${JSON.stringify(p.kind)}, name: ${JSON.stringify(p.name)}, create: ${typeof p.create} }`
      : typeof plugin;
    return `default export must be { kind: ${KIND_LIST}, name: string, create: function }, got ${got}`;
  }
  return plugin;
}
