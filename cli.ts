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
import { routeLabel } from "./core/proxy/routes.ts";
import type { Logging } from "./core/telemetry/log.ts";
import type { Runtime } from "./core/runtime/types.ts";

export { type Options, parseCommandLine, USAGE } from "./cli-args.ts";

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

/** The effective settings `fulcrum check` prints for a valid config, defaults filled in. */
export async function summarize(config: Config): Promise<string> {
  const { describeListener, listenersOf } = await import("./core/config/tls.ts");
  const { formatRanges } = await import("./core/resilience/health.ts");
  const ms = (n: number) => (n === 0 ? "none" : n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`);
  const pct = (r: number) => `${Math.round(r * 1000) / 10}%`;
  const lines = [
    ...listenersOf(config.listen).map(describeListener),
    `workers: ${config.workers === "auto" ? `auto (${navigator.hardwareConcurrency || 1} on this machine)` : config.workers}`,
    `shutdown_timeout: ${ms(config.shutdown_timeout)}`,
  ];
  for (const [name, p] of Object.entries(config.pools)) {
    const strategy = p.strategy.plugin !== undefined ? `${p.strategy.name} (plugin ${p.strategy.plugin})` : p.strategy.name;
    lines.push(`pool ${name}: strategy ${strategy}, host_header ${p.host_header}, panic ${p.panic}`);
    const d = p.discovery;
    if (d?.dns) {
      const at = d.dns.type === "SRV" ? "" : ` port ${d.dns.port}`;
      const every = d.dns.interval !== undefined ? `every ${ms(d.dns.interval)}` : "at each TTL";
      lines.push(`  discovery: dns ${d.dns.type} ${d.dns.name}${at}, ${every}, via ${d.dns.resolver ?? "the system's resolvers"}`);
    } else if (d) lines.push(`  discovery: ${d.name} (plugin ${d.plugin})`);
    for (const b of p.backends) {
      const labels = Object.entries(b.labels).map(([k, v]) => `${k}=${v}`).join(",");
      lines.push(`  - ${b.url} weight ${b.weight}${labels ? ` labels ${labels}` : ""}`);
    }
    lines.push(`  timeouts: connect ${ms(p.timeouts.connect)}, response ${ms(p.timeouts.response)}, request ${ms(p.timeouts.request)}`);
    lines.push(`  keepalive: max_idle ${p.keepalive.max_idle}, idle_timeout ${ms(p.keepalive.idle_timeout)}`);
    const h = p.health;
    lines.push(
      h
        ? `  health: ${h.method} ${h.path} every ${ms(h.interval)} (+ up to ${ms(h.jitter)} jitter), timeout ${ms(h.timeout)}, ` +
          `rise ${h.healthy_threshold}, fall ${h.unhealthy_threshold}, expect ${formatRanges(h.expect_status)}` +
          `${h.expect_body !== undefined ? ` and body ${String(h.expect_body)}` : ""}, start ${h.initial}`
        : "  health: no active checks",
    );
    const od = p.outlier_detection;
    lines.push(
      od
        ? `  outlier_detection: eject after ${od.consecutive_failures} consecutive ${od.on.join("/")} for ${ms(od.ejection_time)} ` +
          `(growing to ${ms(od.max_ejection_time)}), at most ${od.max_ejected_percent}% ejected`
        : "  outlier_detection: off",
    );
    const cb = p.circuit_breaker;
    lines.push(
      cb
        ? `  circuit_breaker: open after ${cb.failures || "-"} consecutive failures` +
          `${cb.failure_ratio ? ` or ${pct(cb.failure_ratio)} failures of >= ${cb.min_requests} in ${ms(cb.window)}` : ""}, ` +
          `open for ${ms(cb.open_for)}, ${cb.half_open_requests} trial request(s)`
        : "  circuit_breaker: off",
    );
    const r = p.retry;
    lines.push(
      `  retry: ${r.attempts} attempt(s) on ${r.on.join(",")}, backoff ${ms(r.backoff.base)}..${ms(r.backoff.max)} full jitter, ` +
        `budget ${pct(r.budget.ratio)} of requests per ${ms(r.budget.window)} + ${r.budget.min_retries_per_second}/s, ` +
        `per-try timeout ${r.per_try_timeout ? ms(r.per_try_timeout) : "= response"}, bodies buffered up to ${r.buffer_body_limit} bytes`,
    );
    lines.push(`  max_inflight: backend ${p.max_inflight.backend || "unlimited"}, pool ${p.max_inflight.pool || "unlimited"}`);
  }
  for (const r of config.routes ?? []) {
    const mw = r.middleware.map((m) => (m.plugin !== undefined ? `${m.name} (plugin ${m.plugin})` : m.name)).join(", ");
    lines.push(
      `route ${routeLabel(r.match)} → ${r.pool}${mw ? `, middleware ${mw}` : ""}` +
        `${r.retry_non_idempotent ? " (retries non-idempotent requests)" : ""}`,
    );
  }
  if (!config.routes) lines.push(`route */ → ${Object.keys(config.pools)[0]} (default: the only pool)`);
  for (const [name, st] of Object.entries(config.stores ?? {})) {
    // The URL may carry a password.
    const where = st.redis.replace(/\/\/[^@/]*@/, "//***@");
    lines.push(`store ${name}: ${where}, prefix ${st.prefix}, timeout ${ms(st.timeout)}, on_error ${st.on_error}, batch ${st.batch}`);
  }
  const admin = config.admin;
  lines.push(
    admin.enabled
      ? `admin: ${
        admin.listen ? `${admin.listen.hostname}:${admin.listen.port}` : "127.0.0.1:9090 (default)"
      }, metrics ${admin.metrics}, token ${admin.token ? "set" : "from FULCRUM_ADMIN_TOKEN if set"}`
      : "admin: off",
  );
  const traces = config.telemetry?.traces;
  const mx = config.telemetry?.metrics;
  if (mx) lines.push(`metrics export: OTLP/JSON to ${mx.endpoint} every ${ms(mx.interval)}`);
  if (traces)
    lines.push(
      `tracing: ${
        traces.enabled === false
          ? "off"
          : `${traces.endpoint ?? "OTEL_* or http://localhost:4318/v1/traces"}, sample_ratio ${traces.sample_ratio ?? 1}`
      }`,
    );
  lines.push(
    `log: level ${config.log.level}, access_log ${config.log.access_log} (${config.log.access_format})${
      config.log.access_log_file ? ` → ${config.log.access_log_file}` : ""
    }`,
  );
  return lines.join("\n");
}
