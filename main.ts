/**
 * Fulcrum's command line: the one place that picks the runtime and wires the parts together.
 *
 *   fulcrum [run] --config FILE   serve (default subcommand; FILE defaults to fulcrum.yaml)
 *   fulcrum check --config FILE   validate and summarise a config; exit 2 on errors
 *   fulcrum demo                  three example backends and Fulcrum in front of them
 *   fulcrum reload --pid PID      make a running Fulcrum re-read its config and plugins (SIGHUP)
 *   fulcrum types                 print the plugin API as a .d.ts
 *   fulcrum version
 */
import { parseArgs } from "node:util";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { getLogger } from "@logtape/logtape";
import { fileURLToPath } from "node:url";
import pkg from "./package.json" with { type: "json" };
import { ConfigError, loadConfigFile } from "./core/config/load.ts";
import type { Config } from "./core/config/schema.ts";
import { startDemoBackends } from "./core/demo.ts";
import { setupLogging } from "./core/log.ts";
import { Registry } from "./core/registry.ts";
import { buildGateway, startServer, type RunningServer } from "./core/server.ts";
import type { Runtime } from "./core/runtime/types.ts";
import { loadPlugins } from "./core/plugins/load.ts";
import { pluginApiDts } from "./core/plugins/types-dts.ts";
import { watchFiles } from "./core/plugins/watch.ts";
import rateLimit from "./core/middleware/rate-limit.ts";
import roundRobin from "./strategies/round-robin.ts";
import weightedRoundRobin from "./strategies/weighted-round-robin.ts";
import leastConnections from "./strategies/least-connections.ts";

const HELP = `Fulcrum ${pkg.version}: HTTP load balancer and reverse proxy

Usage:
  fulcrum [run] [--config FILE]   serve with FILE (default: fulcrum.yaml)
  fulcrum check [--config FILE]   validate FILE, print a summary; exit 2 if invalid
  fulcrum demo                    start three example backends and Fulcrum (config/demo.yaml)
  fulcrum reload --pid PID        make a running Fulcrum reload its config and plugins (sends SIGHUP)
  fulcrum reload --pid-file FILE  the same, with the PID from FILE (written by run --pid-file FILE)
  fulcrum types                   print the plugin API as a .d.ts: fulcrum types > fulcrum.d.ts
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
  registry.register(rateLimit);
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
        pid: { type: "string" },
        "pid-file": { type: "string" },
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
      loadConfigFile(file, {
        readTextFile: runtime.readTextFile,
        env: runtime.env,
        strategyNames: registry.strategyNames(),
        middlewareNames: registry.middlewareNames(),
      });

    switch (command) {
      case "version":
        print(`fulcrum ${pkg.version} (${runtime.name} ${runtime.version})`);
        return 0;
      case "check": {
        const file = values.config ?? "fulcrum.yaml";
        const config = await load(file);
        // Load the plugins and create every strategy and middleware, without listening.
        const plugins = await loadPlugins(config, { runtime, registry, fresh: false });
        buildGateway(config, { registry: plugins.registry, logging: { logger: getLogger(["fulcrum"]), access: undefined, close: async () => {} } })
          .close();
        print(`${file}: OK`);
        print(summarize(config));
        return 0;
      }
      case "run": {
        const file = values.config ?? "fulcrum.yaml";
        return await serve(runtime, registry, await load(file), { file, load, pidFile: values["pid-file"] });
      }
      case "reload": {
        const pidText = values.pid ?? (values["pid-file"] ? readFileSync(values["pid-file"], "utf8").trim() : undefined);
        const pid = Number(pidText);
        if (!pidText || !Number.isInteger(pid) || pid <= 0) {
          fail(`fulcrum reload needs --pid PID or --pid-file FILE (got ${JSON.stringify(pidText ?? "")})`);
          return 2;
        }
        runtime.kill(pid, "SIGHUP");
        print(`sent SIGHUP to ${pid}; the running Fulcrum logs "reloaded" or "reload rejected"`);
        return 0;
      }
      case "types": {
        print(pluginApiDts(await pluginApiSource(runtime), pkg.version));
        return 0;
      }
      case "demo": {
        const file = values.config ?? join(dirname(fileURLToPath(import.meta.url)), "config", "demo.yaml");
        const config = await load(file);
        const ports = config.pools.demo?.backends.map((b) => Number(new URL(b.url).port)) ?? [];
        await startDemoBackends(runtime, ports);
        return await serve(runtime, registry, config, { file, load }, (url) =>
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

interface Source {
  file: string;
  load: (file: string) => Promise<Config>;
  pidFile?: string | undefined;
}

/** Run until SIGTERM/SIGINT, then drain and exit 0. SIGHUP (and file changes, with plugins.watch) reload. */
async function serve(runtime: Runtime, registry: Registry, config: Config, source: Source, onReady?: (url: string) => void): Promise<number> {
  const logging = await setupLogging(runtime, config.log);
  let watcher: { close(): void } | undefined;
  const rewatch = (server: RunningServer) => {
    watcher?.close();
    watcher = server.config.plugins.watch
      ? watchFiles([resolve(runtime.cwd(), source.file), ...server.pluginFiles], () => void server.reload())
      : undefined;
  };
  const server = await startServer(runtime, config, { registry, logging, loadConfig: () => source.load(source.file), onReload: rewatch });
  rewatch(server);
  const offHup = runtime.onSignal("SIGHUP", () => void server.reload());
  if (source.pidFile) writeFileSync(source.pidFile, `${process.pid}\n`);
  const url = `http://${server.listener.hostname.includes(":") ? `[${server.listener.hostname}]` : server.listener.hostname}:${server.listener.port}`;
  logging.logger.info("listening", { url, pools: [...server.gateway.pools.keys()], runtime: runtime.name, pid: process.pid });
  onReady?.(url);
  await new Promise<void>((resolve) => {
    const stop = () => void server.shutdown().then(resolve);
    runtime.onSignal("SIGTERM", stop);
    runtime.onSignal("SIGINT", stop);
  });
  offHup();
  watcher?.close();
  if (source.pidFile) rmSync(source.pidFile, { force: true });
  await logging.close();
  return 0;
}

/** The plugin API's source text, embedded in the binary (Bun) or read beside main.ts (Deno). */
async function pluginApiSource(runtime: Runtime): Promise<string> {
  try {
    const mod = (await import("./core/plugin-api.ts", { with: { type: "text" } })) as unknown as { default: string };
    if (typeof mod.default === "string") return mod.default;
  } catch {
    // Deno without --unstable-raw-imports: read the file instead.
  }
  return runtime.readTextFile(fileURLToPath(new URL("./core/plugin-api.ts", import.meta.url)));
}

function summarize(config: Config): string {
  const ms = (n: number) => (n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`);
  const lines = [`listen: ${config.listen.hostname}:${config.listen.port}`, `shutdown_timeout: ${ms(config.shutdown_timeout)}`];
  for (const [name, p] of Object.entries(config.pools)) {
    const strategy = p.strategy.plugin !== undefined ? `${p.strategy.name} (plugin ${p.strategy.plugin})` : p.strategy.name;
    lines.push(`pool ${name}: strategy ${strategy}, host_header ${p.host_header}, ` +
      `timeouts connect ${ms(p.timeouts.connect)} response ${ms(p.timeouts.response)}, ` +
      `keepalive max_idle ${p.keepalive.max_idle} idle_timeout ${ms(p.keepalive.idle_timeout)}`);
    for (const b of p.backends) {
      const labels = Object.entries(b.labels).map(([k, v]) => `${k}=${v}`).join(",");
      lines.push(`  - ${b.url} weight ${b.weight}${labels ? ` labels ${labels}` : ""}`);
    }
  }
  for (const r of config.routes ?? []) {
    const mw = r.middleware.map((m) => (m.plugin !== undefined ? `${m.name} (plugin ${m.plugin})` : m.name)).join(", ");
    lines.push(`route ${r.match.host ?? "*"}${r.match.path} → ${r.pool}${mw ? `, middleware ${mw}` : ""}`);
  }
  if (!config.routes) lines.push(`route *${"/"} → ${Object.keys(config.pools)[0]} (default: the only pool)`);
  lines.push(`log: level ${config.log.level}, access_log ${config.log.access_log}${config.log.access_log_file ? ` → ${config.log.access_log_file}` : ""}`);
  return lines.join("\n");
}

if (import.meta.main) {
  const runtime = await detectRuntime();
  runtime.exit(await main(runtime));
}
