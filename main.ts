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
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import pkg from "./package.json" with { type: "json" };
// What serving needs is imported here; the rest (the config loader with yaml and zod, `check`,
// the primary's supervision, the demo) when a command or config uses it: a worker process
// loads neither yaml nor zod.
import { ConfigError } from "./core/config/source.ts";
import { parseCommandLine, USAGE } from "./cli-args.ts";
// Embedded so that `fulcrum demo` works from the compiled binary too.
import demoYaml from "./config/demo.yaml" with { type: "text" };
import type { Config } from "./core/config/schema.ts";
import { setupLogging } from "./core/telemetry/log-setup.ts";
import { Registry } from "./core/plugins/registry.ts";
import { listenerUrls, startServer, type RunningServer } from "./core/proxy/server.ts";
import { startObservability } from "./core/admin/observability.ts";
import type { Runtime } from "./core/runtime/types.ts";
import { watchFiles } from "./core/plugins/watch.ts";
import { configFromPrimary, runWorker } from "./core/cluster/worker.ts";
import { WORKER_ENV } from "./core/cluster/state.ts";
import rateLimit from "./core/middleware/rate-limit.ts";
import { TRANSFORMS } from "./core/middleware/transform/index.ts";
import compress from "./core/middleware/compress.ts";
import roundRobin from "./strategies/round-robin.ts";
import weightedRoundRobin from "./strategies/weighted-round-robin.ts";
import leastConnections from "./strategies/least-connections.ts";
import consistentHash from "./strategies/consistent-hash.ts";
import p2cEwma from "./strategies/p2c-ewma.ts";
import dnsDiscovery from "./core/discovery/dns.ts";

// Stamped by compile.sh (`bun build --define`); absent when running from source.
declare const FULCRUM_COMMIT: string | undefined;
const COMMIT = typeof FULCRUM_COMMIT === "string" ? FULCRUM_COMMIT : "source";

async function detectRuntime(): Promise<Runtime> {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return (await import("./core/runtime/bun.ts")).bunRuntime;
  return (await import("./core/runtime/deno.ts")).denoRuntime;
}

export function builtinRegistry(): Registry {
  const registry = new Registry();
  registry.registerStrategy(roundRobin);
  registry.registerStrategy(weightedRoundRobin);
  registry.registerStrategy(leastConnections);
  registry.registerStrategy(consistentHash);
  registry.registerStrategy(p2cEwma);
  registry.register(rateLimit);
  for (const t of TRANSFORMS) registry.register(t);
  registry.register(compress);
  registry.register(dnsDiscovery);
  return registry;
}

function loader(runtime: Runtime, registry: Registry): (file: string) => Promise<Config> {
  return async (file) =>
    (await import("./core/config/load.ts")).loadConfigFile(file, {
      readTextFile: runtime.readTextFile,
      env: runtime.env,
      strategyNames: registry.strategyNames(),
      middlewareNames: registry.middlewareNames(),
    });
}

async function main(runtime: Runtime): Promise<number> {
  const stdout = runtime.openWriter("stdout");
  const stderr = runtime.openWriter("stderr");
  const print = (s: string) => stdout.write(`${s}\n`);
  const fail = (s: string) => stderr.write(`${s}\n`);
  const cli = parseCommandLine(runtime.args());
  try {
    if ("error" in cli) {
      fail(`fulcrum: ${cli.error}\n\n${USAGE}`);
      return 2;
    }
    const { command, values } = cli;
    if (command === "help") {
      print(USAGE);
      return 0;
    }
    const registry = builtinRegistry();
    const load = loader(runtime, registry);

    switch (command) {
      case "version":
        print(`fulcrum ${pkg.version} (commit ${COMMIT}, ${runtime.name} ${runtime.version})`);
        return 0;
      case "healthcheck": {
        // Distroless images have no curl: the binary checks its own admin endpoint.
        const url = values.url ?? "http://127.0.0.1:9090/health";
        try {
          const r = await fetch(url, { signal: AbortSignal.timeout(3_000) });
          print(`${url}: ${r.status}`);
          return r.status === 200 ? 0 : 1;
        } catch (e) {
          fail(`${url}: ${(e as Error).message}`);
          return 1;
        }
      }
      case "check": {
        const file = values.config ?? "fulcrum.yaml";
        // Every stage runs, the later ones on what passed the earlier ones: all problems at once.
        const { checkConfig, problemReport, summarize } = await import("./cli.ts");
        const checked = await checkConfig(file, { runtime, registry, load });
        if (checked.warnings.length) fail(checked.warnings.join("\n"));
        if (!checked.config) {
          fail(problemReport(checked));
          return 2;
        }
        print(`${file}: OK`);
        print(await summarize(checked.config));
        return 0;
      }
      case "run": {
        const file = values.config ?? "fulcrum.yaml";
        return await serve(runtime, registry, () => load(file), { file, load, pidFile: values["pid-file"] });
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
        const { pluginApiDts, pluginApiSources } = await import("./core/plugins/types-dts.ts");
        print(pluginApiDts(await pluginApiSources((f) => runtime.readTextFile(f)), pkg.version));
        return 0;
      }
      case "demo": {
        let ports: number[] = [];
        // Workers serve the port (with the primary's config); the demo backends run once, in the primary.
        const config = async () => {
          const c = values.config ? await load(values.config) : (await import("./core/config/load.ts")).parseConfig(demoYaml, {
            file: "config/demo.yaml",
            env: runtime.env,
            strategyNames: registry.strategyNames(),
          });
          ports = c.pools.demo?.backends.map((b) => Number(new URL(b.url).port)) ?? [];
          await (await import("./core/proxy/demo.ts")).startDemoBackends(runtime, ports);
          return c;
        };
        // The embedded demo config has no file to re-read: a reload re-uses it.
        return await serve(
          runtime,
          registry,
          config,
          { file: values.config, load },
          (url) =>
            print(
              `\nFulcrum demo: ${ports.length} backends behind ${url}\nTry: curl -i ${url}/  (repeat it; the x-backend header rotates)\n`,
            ),
        );
      }
      default:
        fail(`fulcrum: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof ConfigError) {
      // A start stops at the first stage that fails; the full check then reports every problem.
      const file = "error" in cli ? undefined : cli.values.config ?? (cli.command === "run" ? "fulcrum.yaml" : undefined);
      const registry = builtinRegistry();
      const { checkConfig, problemReport } = await import("./cli.ts");
      const checked = file
        ? await checkConfig(file, { runtime, registry, load: loader(runtime, registry) }).catch(() => undefined)
        : undefined;
      fail(problemReport(checked?.problems.length ? checked : e));
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
  file: string | undefined;
  load: (file: string) => Promise<Config>;
  pidFile?: string | undefined;
}

/** Set in a worker process spawned by the primary (core/cluster/): its number. */
function workerId(runtime: Runtime): number | undefined {
  const id = Number(runtime.env(WORKER_ENV));
  return id > 0 && runtime.processes?.parent() ? id : undefined;
}

/**
 * Run until SIGTERM/SIGINT, then drain and exit 0. SIGHUP (and file changes, with plugins.watch)
 * reload. With `workers` > 1, this process becomes the primary of that many workers.
 */
async function serve(
  runtime: Runtime,
  registry: Registry,
  getConfig: () => Promise<Config>,
  source: Source,
  onReady?: (url: string) => void,
): Promise<number> {
  const serviceVersion = pkg.version;
  const worker = workerId(runtime);
  if (worker !== undefined) {
    const fromPrimary = configFromPrimary(runtime);
    return runWorker({ runtime, registry, config: await fromPrimary.first, id: worker, loadConfig: fromPrimary.latest, serviceVersion });
  }
  const config = await getConfig();
  const loadConfig = source.file ? () => source.load(source.file!) : undefined;
  const workers = config.workers === "auto" ? Math.max(1, navigator.hardwareConcurrency || 1) : config.workers;
  if (workers > 1 && runtime.processes) {
    const { runPrimary } = await import("./core/cluster/primary.ts");
    return runPrimary({
      runtime,
      registry,
      config,
      workers,
      loadConfig,
      configFile: source.file,
      pidFile: source.pidFile,
      serviceVersion,
      onReady,
    });
  }
  const logging = await setupLogging(runtime, config.log);
  if (workers > 1) {
    logging.logger.warning("workers: {workers} is not supported on {runtime} (no IPC between processes); serving with one process", {
      workers: config.workers,
      runtime: runtime.name,
    });
  }
  const obs = await startObservability(runtime, config, { logging, serviceVersion: pkg.version, env: runtime.env });
  let watcher: { close(): void } | undefined;
  const rewatch = (server: RunningServer) => {
    watcher?.close();
    watcher = server.config.plugins.watch
      ? watchFiles([...(source.file ? [resolve(runtime.cwd(), source.file)] : []), ...server.pluginFiles], () => void server.reload())
      : undefined;
  };
  const server = await startServer(runtime, config, {
    registry,
    logging,
    observer: obs.observer,
    metrics: obs.metrics,
    loadConfig,
    onReload: rewatch,
    stage: obs.stage,
    beforeListen: (gateway) => {
      obs.restore(gateway); // state_file: drains and weights from before the restart
      return obs.listen();
    },
  });
  obs.attach(server);
  rewatch(server);
  const offHup = runtime.onSignal("SIGHUP", () => void server.reload());
  // logrotate's postrotate (as for nginx): the access log file was moved; write to a new one.
  const offUsr1 = runtime.onSignal("SIGUSR1", () => {
    logging.reopen?.();
    logging.logger.info("reopened the access log", { file: server.config.log.access_log_file ?? null });
  });
  if (source.pidFile) writeFileSync(source.pidFile, `${process.pid}\n`);
  const url = listenerUrls(server)[0]!;
  logging.logger.info("listening", {
    url,
    pools: [...server.gateway.pools.keys()],
    runtime: runtime.name,
    pid: process.pid,
    ...(server.listeners.length > 1 ? { listeners: listenerUrls(server) } : {}),
  });
  onReady?.(url);
  await new Promise<void>((resolve) => {
    const stop = () => {
      obs.draining();
      void server.shutdown().then(resolve);
    };
    runtime.onSignal("SIGTERM", stop);
    runtime.onSignal("SIGINT", stop);
  });
  offHup();
  offUsr1();
  watcher?.close();
  if (source.pidFile) rmSync(source.pidFile, { force: true });
  await obs.close(); // flushes pending spans
  await logging.close();
  return 0;
}

if (import.meta.main) {
  const runtime = await detectRuntime();
  runtime.exit(await main(runtime));
}
