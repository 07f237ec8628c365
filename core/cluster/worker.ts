/**
 * A worker process of `workers: N`: serves the proxy port alongside its siblings (SO_REUSEPORT)
 * and follows its primary: backend state (health, drain, weight) from its broadcasts, reloads
 * and shutdown when told, and its own state and metrics when asked. No admin listener, no
 * active health checks and no discovery of its own (discovered members come from the primary). It exits when the primary goes away.
 */
import type { Config } from "../config/schema.ts";
import { decodeConfig } from "../config/source.ts";
import { setupLogging } from "../telemetry/log-setup.ts";
import { startObservability } from "../admin/observability.ts";
import type { Registry } from "../plugins/registry.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Gateway } from "../proxy/gateway.ts";
import { startServer, type RunningServer } from "../proxy/server.ts";
import { Challenges } from "../tls/edge.ts";
import { applyBackend, applyMembers, applySnapshot, workerView, WORKERS_ENV, type FromWorker, type ToWorker } from "./state.ts";

export interface WorkerOptions {
  runtime: Runtime;
  registry: Registry;
  config: Config;
  /** This worker's number, 1..N. */
  id: number;
  /** Re-reads the config file on reload; undefined re-uses `config`. */
  loadConfig: (() => Promise<Config>) | undefined;
  serviceVersion: string;
}

/**
 * A worker's config, from its primary, which validated it (a worker loads neither yaml nor zod):
 * `first` at start; `latest()` is the one the primary sent before its last reload.
 */
export function configFromPrimary(runtime: Runtime): { first: Promise<Config>; latest: () => Promise<Config> } {
  const channel = runtime.processes?.parent();
  if (!channel) throw new Error("a worker needs the IPC channel to its primary");
  // The primary gone while this worker starts (killed, or stopped before its SIGTERM handler was
  // set): nothing is served yet, so leave at once instead of waiting for it forever. Once
  // runWorker runs, its own handler drains instead.
  channel.onDisconnect(() => {
    if (!workerRunning) runtime.exit(0);
  });
  let text: string | undefined;
  let got!: (c: Config) => void;
  const first = new Promise<Config>((r) => (got = r));
  channel.onMessage((m) => {
    if ((m as ToWorker).t !== "config") return;
    const fresh = text === undefined;
    text = (m as Extract<ToWorker, { t: "config" }>).config;
    if (fresh) got(decodeConfig(text));
  });
  channel.send({ t: "config" } satisfies FromWorker);
  return { first, latest: () => Promise.resolve(decodeConfig(text!)) };
}

/** How long a drained worker waits for the primary to take its final metrics before exiting anyway. */
const FINAL_ACK_MS = 2_000;

/** runWorker has started: the primary's disconnect is its to handle (a drain, once listening). */
let workerRunning = false;

export async function runWorker(o: WorkerOptions): Promise<number> {
  const { runtime, config, id } = o;
  const channel = runtime.processes?.parent();
  if (!channel) throw new Error("a worker needs the IPC channel to its primary");
  const send = (m: FromWorker) => channel.send(m);
  const logging = await setupLogging(runtime, config.log, { worker: id });
  const log = logging.logger;
  const obs = await startObservability(runtime, config, { logging, serviceVersion: o.serviceVersion, env: runtime.env });

  // Assigned once started; the closures above read it before then.
  // deno-lint-ignore prefer-const
  let server: RunningServer | undefined;
  let starting: Gateway | undefined;
  const gateway = () => server?.gateway ?? starting;
  let init!: (m: Extract<ToWorker, { t: "init" }>) => void;
  const initialized = new Promise<Extract<ToWorker, { t: "init" }>>((r) => (init = r));
  let draining: Promise<void> | undefined;
  // ACME http-01 challenges of the primary's orders, answered on this worker's plain listeners.
  const challenges = new Challenges();
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  let primaryGone = false;
  let finalAck: (() => void) | undefined;
  const shutdown = (why?: string) => {
    if (why && !draining) send({ t: "leaving", why });
    // Not listening yet: nothing to drain.
    if (!server) return runtime.exit(0);
    draining ??= server.shutdown().then(stop);
  };

  channel.onMessage(async (raw) => {
    const m = raw as ToWorker;
    switch (m.t) {
      case "init":
        return init(m);
      case "backend": {
        const g = gateway();
        if (g) applyBackend(g, m.pool, m.id, m.state);
        if (m.rid !== undefined) send({ t: "reply", rid: m.rid, ok: true });
        return;
      }
      case "snapshot": {
        const g = gateway();
        if (g) {
          applyMembers(g, m.members);
          applySnapshot(g, m.snapshot);
        }
        return;
      }
      case "reload": {
        const r = server ? await server.reload() : { ok: false, problems: ["still starting"] };
        return send({ t: "reply", rid: m.rid, ok: r.ok, problems: r.problems });
      }
      case "status": {
        const g = gateway();
        return send({ t: "reply", rid: m.rid, ...(g ? { view: workerView(g, id, process.pid) } : {}) });
      }
      case "metrics":
        return send({ t: "reply", rid: m.rid, metrics: obs.metrics ? await obs.metrics.json() : [] });
      case "final-ack":
        return finalAck?.();
      case "acme-challenge":
        if (m.keyAuthorization === null) challenges.delete(m.token);
        else challenges.set(m.token, m.keyAuthorization);
        return send({ t: "reply", rid: m.rid, ok: true });
      case "acme-certificate":
        server?.tls.acmeLoad(m.name);
        return;
      case "reopen-logs":
        logging.reopen?.();
        return send({ t: "reply", rid: m.rid, ok: true });
      case "shutdown":
        // shutdown() stops accepting at once; the reply tells the primary the port is released here.
        shutdown();
        return send({ t: "reply", rid: m.rid, ok: true });
    }
  });
  workerRunning = true;
  channel.onDisconnect(() => {
    primaryGone = true;
    finalAck?.();
    log.warning("the primary process is gone; shutting down");
    shutdown("primary gone");
  });
  // A signal to the whole process group (Ctrl-C, systemd's KillMode=control-group) reaches us too.
  runtime.onSignal("SIGTERM", () => shutdown("SIGTERM"));
  runtime.onSignal("SIGINT", () => shutdown("SIGINT"));
  // Reloads are coordinated by the primary (it validates first); a stray SIGHUP must not kill us.
  runtime.onSignal("SIGHUP", () => log.debug("SIGHUP ignored by a worker: send it to the primary"));
  // The primary passes SIGUSR1 on; one sent to the process group reaches us directly.
  runtime.onSignal("SIGUSR1", () => logging.reopen?.());

  server = await startServer(runtime, config, {
    registry: o.registry,
    logging,
    observer: obs.observer,
    metrics: obs.metrics,
    loadConfig: o.loadConfig,
    stage: obs.stage,
    reusePort: true,
    worker: true,
    challenges,
    // The primary's count, not this config's `workers`: a reload does not change how many run.
    workers: Math.max(1, Number(runtime.env(WORKERS_ENV)) || 1),
    async beforeListen(g) {
      starting = g;
      // From hello on, the primary sends us every change; the snapshot covers what came before.
      send({ t: "hello" });
      const m = await initialized;
      applyMembers(g, m.members);
      applySnapshot(g, m.snapshot);
      // Port 0: the first worker's port, so that all share one.
      config.listen.port = m.port;
    },
  });
  obs.attach(server);
  log.info("worker listening", { pid: process.pid, port: server.listener.port });
  send({ t: "listening", port: server.listener.port });
  await stopped;
  // The primary's last metrics export (at its shutdown, after the workers exit) must include what
  // this worker served: hand over the final counts and wait, bounded, until the primary has them.
  if (obs.metrics && !primaryGone) {
    const acked = new Promise<void>((r) => (finalAck = r));
    send({ t: "final", metrics: await obs.metrics.json() });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([acked, new Promise<void>((r) => (timer = setTimeout(r, FINAL_ACK_MS)))]);
    clearTimeout(timer);
  }
  await obs.close();
  await logging.close();
  return 0;
}
