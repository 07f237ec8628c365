/**
 * Fulcrum's command line: the one place that picks the runtime and wires the parts together.
 *
 *   fulcrum [run] --config FILE   serve (default subcommand; FILE defaults to fulcrum.yaml)
 *   fulcrum check --config FILE   validate and summarise a config; exit 2 on errors
 *   fulcrum demo                  three example backends and Fulcrum in front of them
 *   fulcrum version
 */
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pkg from "./package.json" with { type: "json" };
import { ConfigError, loadConfigFile } from "./core/config/load.ts";
import type { Config } from "./core/config/schema.ts";
import { startDemoBackends } from "./core/demo.ts";
import { setupLogging } from "./core/log.ts";
import { Registry } from "./core/registry.ts";
import { startServer } from "./core/server.ts";
import { startObservability } from "./core/observability.ts";
import type { Runtime } from "./core/runtime/types.ts";
import roundRobin from "./strategies/round-robin.ts";
import weightedRoundRobin from "./strategies/weighted-round-robin.ts";
import leastConnections from "./strategies/least-connections.ts";

const HELP = `Fulcrum ${pkg.version}: HTTP load balancer and reverse proxy

Usage:
  fulcrum [run] [--config FILE]   serve with FILE (default: fulcrum.yaml)
  fulcrum check [--config FILE]   validate FILE, print a summary; exit 2 if invalid
  fulcrum demo                    start three example backends and Fulcrum (config/demo.yaml)
  fulcrum version                 print the version
  fulcrum --help                  this text

From source, run the same commands as: bun main.ts <subcommand>
`;

async function detectRuntime(): Promise<Runtime> {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return (await import("./core/runtime/bun.ts")).bunRuntime;
  return (await import("./core/runtime/deno.ts")).denoRuntime;
}

export function builtinRegistry(): Registry {
  const registry = new Registry();
  registry.registerStrategy(roundRobin);
  registry.registerStrategy(weightedRoundRobin);
  registry.registerStrategy(leastConnections);
  return registry;
}

async function main(runtime: Runtime): Promise<number> {
  const stdout = runtime.openWriter("stdout");
  const stderr = runtime.openWriter("stderr");
  const print = (s: string) => stdout.write(`${s}\n`);
  const fail = (s: string) => stderr.write(`${s}\n`);
  try {
    const { values, positionals } = parseArgs({
      args: runtime.args(),
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
    });
    const command = positionals[0] ?? "run";
    if (values.help || command === "help") {
      print(HELP);
      return 0;
    }
    const registry = builtinRegistry();
    const load = (file: string) =>
      loadConfigFile(file, { readTextFile: runtime.readTextFile, env: runtime.env, strategyNames: registry.strategyNames() });

    switch (command) {
      case "version":
        print(`fulcrum ${pkg.version} (${runtime.name} ${runtime.version})`);
        return 0;
      case "check": {
        const file = values.config ?? "fulcrum.yaml";
        const config = await load(file);
        print(`${file}: OK`);
        print(summarize(config));
        return 0;
      }
      case "run":
        return await serve(runtime, registry, await load(values.config ?? "fulcrum.yaml"));
      case "demo": {
        const file = values.config ?? join(dirname(fileURLToPath(import.meta.url)), "config", "demo.yaml");
        const config = await load(file);
        const ports = config.pools.demo?.backends.map((b) => Number(new URL(b.url).port)) ?? [];
        await startDemoBackends(runtime, ports);
        return await serve(runtime, registry, config, (url) =>
          print(`\nFulcrum demo: ${ports.length} backends behind ${url}\nTry: curl -i ${url}/  (repeat it; the x-backend header rotates)\n`));
      }
      default:
        fail(`unknown command "${command}"\n\n${HELP}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) fail(p);
      fail(`${e.problems.length} problem(s); nothing was started.`);
      return 2;
    }
    fail(`fulcrum: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  } finally {
    stdout.flush();
    stderr.flush();
  }
}

/** Run until SIGTERM/SIGINT, then drain and exit 0. Returns only on shutdown. */
async function serve(runtime: Runtime, registry: Registry, config: Config, onReady?: (url: string) => void): Promise<number> {
  const logging = await setupLogging(runtime, config.log);
  const obs = await startObservability(runtime, config, { logging, serviceVersion: pkg.version, env: runtime.env });
  const server = await startServer(runtime, config, { registry, logging, observer: obs.observer, metrics: obs.metrics });
  obs.attach(server);
  const url = `http://${server.listener.hostname.includes(":") ? `[${server.listener.hostname}]` : server.listener.hostname}:${server.listener.port}`;
  logging.logger.info("listening", { url, pools: [...server.gateway.pools.keys()], runtime: runtime.name });
  onReady?.(url);
  await new Promise<void>((resolve) => {
    const stop = () => {
      obs.draining();
      void server.shutdown().then(resolve);
    };
    runtime.onSignal("SIGTERM", stop);
    runtime.onSignal("SIGINT", stop);
  });
  await obs.close(); // flushes pending spans
  await logging.close();
  return 0;
}

function summarize(config: Config): string {
  const ms = (n: number) => (n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`);
  const lines = [`listen: ${config.listen.hostname}:${config.listen.port}`, `shutdown_timeout: ${ms(config.shutdown_timeout)}`];
  for (const [name, p] of Object.entries(config.pools)) {
    lines.push(`pool ${name}: strategy ${p.strategy.name ?? p.strategy.plugin}, host_header ${p.host_header}, ` +
      `timeouts connect ${ms(p.timeouts.connect)} response ${ms(p.timeouts.response)}, ` +
      `keepalive max_idle ${p.keepalive.max_idle} idle_timeout ${ms(p.keepalive.idle_timeout)}`);
    for (const b of p.backends) {
      const labels = Object.entries(b.labels).map(([k, v]) => `${k}=${v}`).join(",");
      lines.push(`  - ${b.url} weight ${b.weight}${labels ? ` labels ${labels}` : ""}`);
    }
  }
  for (const r of config.routes ?? []) lines.push(`route ${r.match.host ?? "*"}${r.match.path} → ${r.pool}`);
  if (!config.routes) lines.push(`route *${"/"} → ${Object.keys(config.pools)[0]} (default: the only pool)`);
  const admin = config.admin;
  lines.push(admin.enabled ? `admin: ${admin.listen ? `${admin.listen.hostname}:${admin.listen.port}` : "127.0.0.1:9090 (default)"}, metrics ${admin.metrics}, token ${admin.token ? "set" : "from FULCRUM_ADMIN_TOKEN if set"}` : "admin: off");
  const traces = config.telemetry?.traces;
  if (traces) lines.push(`tracing: ${traces.enabled === false ? "off" : `${traces.endpoint ?? "OTEL_* or http://localhost:4318/v1/traces"}, sample_ratio ${traces.sample_ratio ?? 1}`}`);
  lines.push(`log: level ${config.log.level}, access_log ${config.log.access_log}${config.log.access_log_file ? ` → ${config.log.access_log_file}` : ""}`);
  return lines.join("\n");
}

if (import.meta.main) {
  const runtime = await detectRuntime();
  runtime.exit(await main(runtime));
}
