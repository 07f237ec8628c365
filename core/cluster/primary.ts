/**
 * The primary of `workers: N` (N > 1). It validates the config and plugins (a bad one exits
 * before anything listens), owns the admin listener and the active health checks, and runs N
 * worker processes of this same program that share the proxy port (SO_REUSEPORT). It restarts
 * a worker that dies (with backoff), turns SIGHUP into a validated reload of every worker,
 * broadcasts health flips and admin changes, and drains all workers on SIGTERM/SIGINT.
 */
import { rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Counter } from "prom-client";
import CounterMetric from "prom-client/lib/counter.js";
import Gauge from "prom-client/lib/gauge.js";
import type { Config } from "../config/schema.ts";
import { encodeConfig } from "../config/source.ts";
import { setupLogging } from "../telemetry/log-setup.ts";
import { startObservability } from "../admin/observability.ts";
import { loadPlugins } from "../plugins/load.ts";
import { createReloader, type ServingState } from "../proxy/reload.ts";
import { watchFiles } from "../plugins/watch.ts";
import type { Registry } from "../plugins/registry.ts";
import type { Runtime, WorkerProcess } from "../runtime/types.ts";
import { buildGateway } from "../proxy/gateway.ts";
import type { ServerDeps } from "../proxy/server.ts";
import { configDir, TlsManager } from "../tls/manager.ts";
import {
  clusterView,
  members,
  sharedState,
  snapshot,
  WORKER_ENV,
  WORKERS_ENV,
  type FromWorker,
  type ToWorker,
  type WorkerView,
} from "./state.ts";
import type { MetricsJson } from "../telemetry/metrics.ts";

export interface PrimaryOptions {
  runtime: Runtime;
  registry: Registry;
  config: Config;
  workers: number;
  /** Re-reads the config file on reload; undefined re-uses `config`. */
  loadConfig: (() => Promise<Config>) | undefined;
  configFile: string | undefined;
  pidFile: string | undefined;
  serviceVersion: string;
  onReady?: (url: string) => void;
}

interface Slot {
  readonly id: number;
  proc: WorkerProcess | undefined;
  /** Said hello and got a snapshot: receives every broadcast from then on. */
  attached: boolean;
  startedAt: number;
  /** Consecutive crashes, for the restart backoff. */
  crashes: number;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  /** Why the worker said it is stopping on its own (a signal sent to it), if it did. */
  leaving: string | undefined;
  /** Its metrics as it exited after draining: counted in the primary's totals (the last export) until it is replaced. */
  final: MetricsJson | undefined;
  /** Start-up: settles when the worker listens, or fails if it exits first. */
  waiter: { resolve(port: number): void; reject(e: Error): void } | undefined;
}

type Reply = Extract<FromWorker, { t: "reply" }>;

const START_TIMEOUT_MS = 60_000;
const RPC_TIMEOUT_MS = 2_000;
const RELOAD_TIMEOUT_MS = 60_000;
/** A worker that ran this long before dying restarts at once (its crash count resets). */
const STABLE_MS = 60_000;
const MAX_BACKOFF_MS = 30_000;

export async function runPrimary(o: PrimaryOptions): Promise<number> {
  const { runtime, config } = o;
  const processes = runtime.processes!;
  // Set before any worker starts: a SIGTERM during start-up drains once the workers listen,
  // instead of killing this process at once.
  const stopSignal = new Promise<void>((r) => {
    runtime.onSignal("SIGTERM", r);
    runtime.onSignal("SIGINT", r);
  });
  const logging = await setupLogging(runtime, config.log, { sharedStdout: true });
  const log = logging.logger;
  const obs = await startObservability(runtime, config, { logging, serviceVersion: o.serviceVersion, env: runtime.env });
  const slots: Slot[] = Array.from({ length: o.workers }, (_, i) => ({
    id: i + 1,
    proc: undefined,
    attached: false,
    startedAt: 0,
    crashes: 0,
    restartTimer: undefined,
    leaving: undefined,
    final: undefined,
    waiter: undefined,
  }));
  const broadcast = (m: ToWorker) => {
    for (const s of slots) if (s.attached) s.proc!.send(m);
  };
  const deps: ServerDeps = {
    registry: o.registry,
    logging,
    metrics: obs.metrics,
    loadConfig: o.loadConfig,
    stage: obs.stage,
    onHealthChange: (p, b) => broadcast({ t: "backend", pool: p.name, id: b.id, state: sharedState(b) }),
    // Discovery runs here: workers get each new membership with the state of its backends.
    onMembersChange: (p) => {
      if (current.gateway.pools.get(p.name) === p)
        broadcast({ t: "snapshot", members: members(current.gateway, p), snapshot: snapshot(current.gateway) });
    },
  };
  // The primary builds the pools too, to health-check them and answer the admin API; it never
  // proxies. A config or plugin that fails here throws before anything listens.
  const plugins = await loadPlugins(config, { runtime, registry: o.registry, fresh: false });
  // Certificates are checked here too, before any worker starts: a bad one exits 2 with its position.
  const tls = new TlsManager(config, configDir(config, runtime.cwd()), log.getChild("tls"));
  let current: ServingState = { config, gateway: buildGateway(config, { ...deps, registry: plugins.registry }), files: plugins.files };
  current.gateway.activate();
  // Discovered pools' first members (bounded: core/discovery/runner.ts), so that the state file's
  // drains find them and the workers start from them.
  await Promise.all([...current.gateway.pools.values()].map((p) => p.discovery?.start()));
  obs.restore(current.gateway); // state_file: the primary owns the operator state; workers get it in their snapshot
  await obs.listen();
  let restarts: Counter | undefined;
  // Also on metrics a reload turns on.
  obs.extendMetrics((m) => {
    restarts = clusterMetrics(m.registry, slots);
    // A worker that has exited after draining counts with its final metrics: the last export, after
    // every worker has exited, includes all they served.
    m.remote = async () =>
      (await Promise.all(slots.map(async (s) => (await call(s, { t: "metrics" }))?.metrics ?? s.final))).flatMap((m) => (m ? [m] : []));
  });

  // ---- talking to workers ----------------------------------------------------------------
  /** The proxy port; 0 until the first worker has bound one. */
  let port = config.listen.port;
  let stopping = false;
  let rid = 0;
  const pending = new Map<number, { slot: Slot; settle(r: Reply | undefined): void }>();
  type Request =
    | { t: "reload" | "status" | "metrics" | "shutdown" | "reopen-logs" }
    | Omit<Extract<ToWorker, { t: "backend" }>, "rid">
    | Omit<Extract<ToWorker, { t: "acme-challenge" }>, "rid">;
  const call = (slot: Slot, request: Request, timeoutMs = RPC_TIMEOUT_MS) =>
    new Promise<Reply | undefined>((settle) => {
      if (!slot.attached) return settle(undefined);
      const id = ++rid;
      const timer = setTimeout(() => entry.settle(undefined), timeoutMs);
      const entry = { slot, settle: (r: Reply | undefined) => (clearTimeout(timer), pending.delete(id), settle(r)) };
      pending.set(id, entry);
      slot.proc!.send({ ...request, rid: id } as ToWorker);
    });
  const init = (slot: Slot) => {
    if (!slot.proc) return;
    slot.attached = true;
    slot.proc.send({ t: "init", port, snapshot: snapshot(current.gateway), members: members(current.gateway) } satisfies ToWorker);
  };
  // Port 0: the first worker ready to listen picks a free port; the others wait for it, then join.
  let binding = false;
  const waitingForPort: Slot[] = [];
  const onMessage = (slot: Slot, m: FromWorker) => {
    if (m.t === "config") {
      slot.proc?.send({ t: "config", config: encodeConfig(current.config) } satisfies ToWorker);
    } else if (m.t === "hello") {
      if (port !== 0) init(slot);
      else if (binding) waitingForPort.push(slot);
      else {
        binding = true;
        init(slot);
      }
    } else if (m.t === "listening") {
      if (port === 0) {
        port = m.port;
        for (const s of waitingForPort.splice(0)) init(s);
      }
      if (slot.waiter) slot.waiter.resolve(m.port);
      else log.info("worker {worker} restarted", { worker: slot.id, pid: slot.proc?.pid });
      slot.waiter = undefined;
    } else if (m.t === "leaving") {
      slot.leaving = m.why;
    } else if (m.t === "final") {
      slot.final = m.metrics;
      slot.proc?.send({ t: "final-ack" } satisfies ToWorker);
    } else if (m.t === "reply") {
      pending.get(m.rid)?.settle(m);
    }
  };

  // ---- supervision -----------------------------------------------------------------------
  const spawn = (slot: Slot) => {
    const proc = processes.spawnSelf(
      runtime.args(),
      { [WORKER_ENV]: String(slot.id), [WORKERS_ENV]: String(o.workers) },
      (m) => onMessage(slot, m as FromWorker),
    );
    slot.proc = proc;
    slot.leaving = undefined;
    slot.final = undefined;
    slot.startedAt = Date.now();
    void proc.exited.then((r) => exited(slot, proc, r));
  };
  const exited = (slot: Slot, proc: WorkerProcess, r: { code: number | null; signal: string | null }) => {
    if (slot.proc !== proc) return;
    slot.proc = undefined;
    slot.attached = false;
    for (const p of pending.values()) if (p.slot === slot) p.settle(undefined);
    const how = slot.leaving ? `stopped on ${slot.leaving}` : r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
    if (slot.waiter) {
      slot.waiter.reject(new Error(`worker ${slot.id} (pid ${proc.pid}) exited before listening (${how})`));
      slot.waiter = undefined;
      return;
    }
    if (stopping) return;
    if (Date.now() - slot.startedAt > STABLE_MS) slot.crashes = 0;
    const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** slot.crashes);
    slot.crashes++;
    restarts?.inc();
    const fields = { worker: slot.id, pid: proc.pid, how, delay_ms: delay };
    // A signal to the whole process group (Ctrl-C) reaches the workers too, and the primary's own
    // shutdown follows within the delay: then nothing restarts and there is nothing to report.
    if (!slot.leaving) log.error("worker {worker} exited ({how}); restarting it in {delay_ms}ms", fields);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (stopping) return;
      if (slot.leaving) log.warning("worker {worker} exited ({how}); restarting it", fields);
      spawn(slot);
    }, delay);
  };
  const start = (slot: Slot) =>
    new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`worker ${slot.id} did not listen within ${START_TIMEOUT_MS / 1000}s`)),
        START_TIMEOUT_MS,
      );
      slot.waiter = { resolve: (p) => (clearTimeout(timer), resolve(p)), reject: (e) => (clearTimeout(timer), reject(e)) };
      spawn(slot);
    });
  const killAll = async (graceMs: number) => {
    const alive = slots.filter((s) => s.proc);
    const exits = Promise.all(alive.map((s) => s.proc!.exited));
    for (const s of alive) s.proc!.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([exits.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
    clearTimeout(timer);
    if (late) { for (const s of slots) s.proc?.kill("SIGKILL"); }
    await exits;
  };

  // Health checks first, so workers start from the freshest view.
  for (const p of current.gateway.pools.values()) p.start();
  try {
    await Promise.all(slots.map(start));
  } catch (e) {
    stopping = true;
    log.error("start-up failed: {error}; stopping the other workers", { error: (e as Error).message });
    await killAll(5_000);
    for (const p of current.gateway.pools.values()) p.close();
    await obs.close();
    await logging.close();
    return 1;
  }

  // ACME here, once for all: the workers answer the challenges and load the certificates. Loaded
  // only for ACME names (acme.ts brings node:https along).
  const acme = tls.acmeNames().length === 0 ? undefined : (await import("../tls/acme.ts")).startAcmeFor(
    config,
    tls,
    log.getChild("acme"),
    async (token, keyAuthorization) =>
      void (await Promise.all(slots.map((s) => call(s, { t: "acme-challenge", token, keyAuthorization })))),
    (name) => broadcast({ t: "acme-certificate", name }),
  );

  // ---- reload ----------------------------------------------------------------------------
  let watcher: { close(): void } | undefined;
  const rewatch = () => {
    watcher?.close();
    const files = [...(o.configFile ? [resolve(runtime.cwd(), o.configFile)] : []), ...current.files];
    watcher = current.config.plugins.watch ? watchFiles(files, () => void reload()) : undefined;
  };
  const reload = createReloader({
    runtime,
    deps,
    build: buildGateway,
    current: () => current,
    async swap(next) {
      const old = current.gateway;
      next.gateway.activate();
      current = next;
      for (const p of old.pools.values()) p.stop();
      for (const p of next.gateway.pools.values()) p.start();
      old.retire(next.gateway); // the primary has no requests in flight
      rewatch();
      tls.reload(); // the admin API's view; each worker reloads the certificates it serves
      // Validated here first; each worker gets the same config, loads its plugins and swaps like a single process.
      const text = encodeConfig(next.config);
      for (const s of slots) s.proc?.send({ t: "config", config: text } satisfies ToWorker);
      const replies = await Promise.all(slots.map((s) => call(s, { t: "reload" }, RELOAD_TIMEOUT_MS)));
      // Backends added by the reload get the primary's state (flips during the reload too).
      broadcast({ t: "snapshot", snapshot: snapshot(current.gateway), members: members(current.gateway) });
      const problems: string[] = [];
      replies.forEach((r, i) => {
        if (r && !r.ok) { for (const p of r.problems ?? []) problems.push(`worker ${slots[i]!.id}: ${p}`); }
      });
      return problems;
    },
    stopping: () => stopping,
  });
  rewatch();

  // SIGUSR1 and POST /logs/reopen: every worker writes the access log; each reopens its own file.
  const reopenLogs = async () => {
    logging.reopen?.();
    await Promise.all(slots.map((s) => call(s, { t: "reopen-logs" })));
    log.info("reopened the access log", { file: current.config.log.access_log_file ?? null, workers: slots.length });
  };
  const views = async () =>
    (await Promise.all(slots.map((s) => call(s, { t: "status" })))).flatMap((r) => (r?.view ? [r.view] : [])) as WorkerView[];
  obs.attach({
    get gateway() {
      return current.gateway;
    },
    get config() {
      return current.config;
    },
    reload,
    tls,
    cluster: {
      view: async () => clusterView(await views()),
      changed: async (p, b) => {
        await Promise.all(slots.map((s) => call(s, { t: "backend", pool: p.name, id: b.id, state: sharedState(b) })));
      },
      reopenLogs,
    },
  });
  const offHup = runtime.onSignal("SIGHUP", () => void reload());
  const offUsr1 = runtime.onSignal("SIGUSR1", () => void reopenLogs());
  if (o.pidFile) writeFileSync(o.pidFile, `${process.pid}\n`);
  const host = config.listen.hostname;
  const url = `${config.listen.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  log.info("listening", { url, pools: [...current.gateway.pools.keys()], runtime: runtime.name, pid: process.pid, workers: slots.length });
  o.onReady?.(url);

  // ---- shutdown --------------------------------------------------------------------------
  await stopSignal;
  stopping = true;
  acme?.stop();
  obs.draining();
  offHup();
  offUsr1();
  watcher?.close();
  for (const s of slots) clearTimeout(s.restartTimer);
  for (const p of current.gateway.pools.values()) p.stop();
  // Each worker answers once it has stopped accepting; then the port is closed everywhere.
  await Promise.all(slots.map((s) => call(s, { t: "shutdown" })));
  log.info("shutting down", { workers: slots.filter((s) => s.proc).length });
  // Workers bound their own drain by shutdown_timeout; this bounds a stuck one.
  await killAll(current.config.shutdown_timeout + 5_000);
  current.gateway.close();
  if (o.pidFile) rmSync(o.pidFile, { force: true });
  await obs.close();
  log.info("stopped");
  await logging.close();
  return 0;
}

/** Primary-only series: workers up, and restarts after a crash. */
function clusterMetrics(registry: import("prom-client").Registry, slots: readonly Slot[]) {
  new Gauge({
    name: "fulcrum_workers",
    help: "Worker processes serving the proxy port now.",
    registers: [registry],
    collect() {
      this.set(slots.filter((s) => s.attached).length);
    },
  });
  return new CounterMetric({
    name: "fulcrum_worker_restarts_total",
    help: "Workers restarted after exiting unexpectedly.",
    registers: [registry],
  });
}
