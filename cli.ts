/**
 * The command line for main.ts: its parsing (a bad command line is one line and the usage, exit
 * 2) and `fulcrum check`, whose stages all run and report even after an earlier one found
 * problems: YAML → schema → names and references → plugin loading → creating every strategy and
 * middleware. Only what depends on a part that failed is skipped, and the report says so.
 */
import { parseArgs } from "node:util";
import { getLogger } from "@logtape/logtape";
import pkg from "./package.json" with { type: "json" };
import { ConfigError, configSource } from "./core/config/load.ts";
import type { Config } from "./core/config/schema.ts";
import { didYouMean } from "./core/config/units.ts";
import { loadPlugins, PluginLoadError } from "./core/plugins/load.ts";
import { configDir, TlsManager } from "./core/tls/manager.ts";
import type { Registry } from "./core/plugins/registry.ts";
import { buildGateway } from "./core/proxy/gateway.ts";
import { pluginApi } from "./core/proxy/plugin-context.ts";
import { compileMatch, unreachableRoutes } from "./core/proxy/route-match.ts";
import type { Logging } from "./core/telemetry/log.ts";
import type { Runtime } from "./core/runtime/types.ts";

export const USAGE = `Fulcrum ${pkg.version}: HTTP load balancer and reverse proxy

Usage:
  fulcrum [run] [--config FILE]   serve with FILE (default: fulcrum.yaml)
  fulcrum check [--config FILE]   validate FILE, print a summary; exit 2 if invalid
  fulcrum demo                    start three example backends and Fulcrum (config/demo.yaml)
  fulcrum healthcheck [--url URL] exit 0 if the admin /health answers 200 (for Docker HEALTHCHECK)
  fulcrum reload --pid PID        make a running Fulcrum reload its config and plugins (sends SIGHUP)
  fulcrum reload --pid-file FILE  the same, with the PID from FILE (written by run --pid-file FILE)
  fulcrum types                   print the plugin API as a .d.ts: fulcrum types > fulcrum.d.ts
  fulcrum version, -v, --version  print the version
  fulcrum help, -h, --help        this text

Exit codes: 0 ok, 2 bad config or command line, 1 anything else.
From source, run the same commands as: bun main.ts <subcommand>
`;

const COMMANDS = ["run", "check", "demo", "healthcheck", "reload", "types", "version", "help"];

const OPTIONS = {
  config: { type: "string", short: "c" },
  url: { type: "string" },
  pid: { type: "string" },
  "pid-file": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
} as const;

export type Options = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>["values"];

/** The subcommand and its options, or what is wrong with the command line (one line). */
export function parseCommandLine(args: string[]): { command: string; values: Options } | { error: string } {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true });
  } catch (e) {
    return { error: argumentError(e) };
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: "help", values };
  if (values.version) return { command: "version", values };
  const command = positionals[0] ?? "run";
  if (!COMMANDS.includes(command)) {
    const hint = didYouMean(command, COMMANDS);
    return { error: `unknown command "${command}"${hint ? `; did you mean "${hint}"?` : ""}` };
  }
  if (positionals.length > 1) return { error: `unexpected argument "${positionals[1]}" after ${command}` };
  return { command, values };
}

/** node:util's parse errors, in one short line (its own messages are long and name its API). */
function argumentError(e: unknown): string {
  const message = String((e as Error)?.message ?? e);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  const long = /--[\w-]+/.exec(quoted)?.[0] ?? quoted;
  switch ((e as { code?: string }).code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION": {
      const option = quoted.startsWith("-") ? quoted : `-${quoted}`;
      const hint = didYouMean(option.replace(/^-+/, ""), Object.keys(OPTIONS));
      return `unknown option ${option}${hint ? `; did you mean --${hint}?` : ""}`;
    }
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return / missing/.test(message) ? `${long} needs a value` : `${long} takes no value`;
    default:
      return message.split("\n")[0]!;
  }
}

/** What `fulcrum check` found; `config` is set only when there were no problems. */
export interface CheckResult {
  readonly config?: Config;
  readonly problems: readonly string[];
  /** What could not be checked because of the problems, one line each. */
  readonly unchecked: readonly string[];
  /** Not errors: what is valid but surely not meant (a route that can never match) or worth knowing (a store unreachable from here), one line each. */
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
  if (problems.length === 0) warnings.push(...(await storeWarnings(config)));
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

/**
 * Try each declared store once. One that does not answer is a warning, not an error: it may be
 * reachable only from the servers the config is for, and `run` starts without it anyway
 * (`on_error` decides until it answers).
 */
async function storeWarnings(config: Config): Promise<string[]> {
  const stores = config.stores ?? {};
  if (Object.keys(stores).length === 0) return [];
  const source = configSource(config);
  const log = getLogger(["fulcrum", "stores"]);
  const { openStores } = await import("./core/stores/open.ts");
  const set = await openStores(stores, { warning: (m, p) => log.debug(m, p ?? {}), info: () => {} });
  try {
    const down = await set.waitReady(2000);
    return down.map((name) =>
      `${source.at(["stores", name, "redis"])}: warning: stores.${name}: ${stores[name]!.redis} did not answer; ` +
      `requests will be decided by on_error (${stores[name]!.on_error}) until it does`
    );
  } finally {
    await set.close();
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
