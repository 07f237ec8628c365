/**
 * `fulcrum check` (the command line itself is parsed in cli-args.ts): its stages all run and
 * report even after an earlier one found problems: YAML → schema → names and references → plugin loading → creating every strategy and
 * middleware. Only what depends on a part that failed is skipped, and the report says so.
 */
import { getLogger } from "@logtape/logtape";
import { ConfigError, configSource } from "./core/config/load.ts";
import type { Config } from "./core/config/schema.ts";
import { loadPlugins, PluginLoadError } from "./core/plugins/load.ts";
import { configDir, TlsManager } from "./core/tls/manager.ts";
import type { Registry } from "./core/plugins/registry.ts";
import { buildGateway } from "./core/proxy/gateway.ts";
import { pluginApi } from "./core/proxy/plugin-context.ts";
import { compileMatch, unreachableRoutes } from "./core/proxy/route-match.ts";
import type { Logging } from "./core/telemetry/log.ts";
import type { Runtime } from "./core/runtime/types.ts";

export { type Options, parseCommandLine, USAGE } from "./cli-args.ts";

/** What `fulcrum check` found; `config` is set only when there were no problems. */
export interface CheckResult {
  readonly config?: Config;
  readonly problems: readonly string[];
  /** What could not be checked because of the problems, one line each. */
  readonly unchecked: readonly string[];
  /** Not errors: what is valid but surely not meant (a route that can never match), `file:line:col: …`. */
  readonly warnings: readonly string[];
}

export interface CheckDeps {
  runtime: Pick<Runtime, "importPlugin" | "cwd">;
  /** The built-ins. */
  registry: Registry;
  /** Read and parse the config file (main.ts's, with the registered names). */
  load: (file: string) => Promise<Config>;
}

/** Run every check on `file`, the later stages on whatever passed the earlier ones. Starts nothing. */
export async function checkConfig(file: string, deps: CheckDeps): Promise<CheckResult> {
  const problems: string[] = [];
  const unchecked: string[] = [];
  const failed = (e: unknown) => {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...e.problems);
    unchecked.push(...e.unchecked);
  };
  let config: Config | undefined;
  try {
    config = await deps.load(file);
  } catch (e) {
    failed(e);
    config = (e as ConfigError).partial;
  }
  if (!config) return { problems, unchecked, warnings: [] };
  const warnings = routeWarnings(config);

  // The TLS certificates as `run` reads them: files, keys matching, expiry, SAN names.
  if (config.listen) {
    try {
      new TlsManager(config, configDir(config, deps.runtime.cwd()), getLogger(["fulcrum", "tls"]));
    } catch (e) {
      failed(e);
    }
  }

  let registry = deps.registry;
  try {
    registry = (await loadPlugins(config, { runtime: deps.runtime, registry, fresh: false })).registry;
  } catch (e) {
    failed(e);
    if (e instanceof PluginLoadError) registry = e.loaded.registry;
  }

  const logging: Logging = { logger: getLogger(["fulcrum"]), access: undefined, close: async () => {} };
  if (problems.length === 0) {
    // Everything so far is valid: build the gateway for real (pools, backends, every plugin), without listening.
    try {
      buildGateway(config, { registry, logging }).close();
    } catch (e) {
      failed(e);
    }
  } else {
    const created = createEach(config, registry, logging);
    problems.push(...created.problems);
    if (created.skipped.length) {
      unchecked.push(`${file}: not created because of the problems above, so their options are unchecked: ${created.skipped.join(", ")}`);
    }
  }
  return { config: problems.length ? undefined : config, problems: byPosition(problems, file), unchecked, warnings };
}

/** Routes that can never match (core/proxy/route-match.ts), with where they are in the file. */
export function routeWarnings(config: Config): string[] {
  const routes = config.routes;
  if (!Array.isArray(routes)) return [];
  const source = configSource(config);
  try {
    return unreachableRoutes(routes.map((r, i) => compileMatch(r.match, i))).map(([i, why]) =>
      `${source.at(["routes", i, "match"])}: warning: routes[${i}] can never match: ${why}`
    );
  } catch {
    // A partial config whose routes did not validate: their problems are reported already.
    return [];
  }
}

/** The report of a failed check, for standard error: the problems, what was skipped, the count. */
export function problemReport(r: Pick<CheckResult, "problems" | "unchecked">): string {
  return [...r.problems, ...r.unchecked, `${r.problems.length} problem(s); nothing was started.`].join("\n");
}

/**
 * Call every strategy's and middleware's create() (plugins validate their options there) that
 * the earlier stages left usable; as buildGateway does, with its messages, but part by part.
 */
function createEach(config: Config, registry: Registry, logging: Logging): { problems: string[]; skipped: string[] } {
  const source = configSource(config);
  const problems: string[] = [];
  const skipped: string[] = [];
  const usable = (kind: "strategy" | "middleware", name: string | undefined): name is string =>
    name !== undefined && registry.names(kind).includes(name);
  const attempt = (path: (string | number)[], label: string, create: () => unknown) => {
    try {
      create();
    } catch (e) {
      problems.push(`${source.at(path)}: ${label}: ${(e as Error)?.message ?? String(e)}`);
    }
  };
  for (const [name, pool] of Object.entries(config.pools)) {
    const s = pool.strategy;
    const where = `pools.${name}.strategy`;
    if (!usable("strategy", s.name)) skipped.push(where);
    else {
      const label = `${where}: ${s.plugin !== undefined ? `plugin ${s.plugin}` : s.name}`;
      attempt(["pools", name, "strategy"], label, () => registry.createStrategy(s.name!, s.options, pluginApi(registry, logging, s.name!)));
    }
  }
  config.routes?.forEach((route, i) =>
    route.middleware.forEach((m, j) => {
      const where = `routes[${i}].middleware[${j}]`;
      // A key plugin (rate-limit's `key: { plugin }`) that did not load leaves its middleware uncreatable.
      const key = (typeof m.options === "object" ? m.options.key : undefined) as { plugin?: unknown } | undefined;
      if (!usable("middleware", m.name) || typeof key?.plugin === "string") skipped.push(where);
      else {
        const label = `${where}: ${m.plugin !== undefined ? `plugin ${m.plugin}` : m.name}`;
        attempt(["routes", i, "middleware", j], label, () =>
          registry.createMiddleware(m.name!, m.options, pluginApi(registry, logging, m.name!)));
      }
    })
  );
  return { problems, skipped };
}

/** Problems in file order (a stable sort: same place, same order as found). */
function byPosition(problems: string[], file: string): string[] {
  const place = (p: string) => {
    const m = p.startsWith(`${file}:`) ? /^(\d+):(\d+): /.exec(p.slice(file.length + 1)) : null;
    return m ? Number(m[1]) * 1e6 + Number(m[2]) : Number.MAX_SAFE_INTEGER;
  };
  return problems.map((p) => [place(p), p] as const).sort((a, b) => a[0] - b[0]).map(([, p]) => p);
}
