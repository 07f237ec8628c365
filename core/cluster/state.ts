/**
 * What the primary and its workers say to each other over IPC, and the backend state they
 * share. Shared (one view, set by the primary): active health, drain, weight. Per worker (each
 * sees its own share of the traffic): circuit breaker, passive ejection, in-flight, latency.
 */
import { poolStatus } from "../admin/pool-status.ts";
import type { MetricsJson } from "../telemetry/metrics.ts";
import type { Backend, Pool } from "../pool/pool.ts";
import type { Gateway } from "../proxy/gateway.ts";

/** Set on a worker's environment: its number, 1..N. */
export const WORKER_ENV = "FULCRUM_WORKER";
/** Set on a worker's environment: how many workers there are (they split the retry budget's reserve). */
export const WORKERS_ENV = "FULCRUM_WORKERS";

/** The state of a backend that every worker holds the same. */
export interface SharedState {
  /** Active health-check verdict (the primary runs the checks). */
  healthy: boolean;
  draining: boolean;
  weight: number;
}

/** pool name → backend id → state. */
export type Snapshot = Record<string, Record<string, SharedState>>;

/** pool name → the members its discovery found (pools with `discovery` only): the primary's source runs, workers follow. */
export type Members = Record<string, { url: string; id: string; weight: number; labels: Record<string, string> }[]>;

export type ToWorker =
  /** The validated config (config/source.ts encodeConfig): the answer to "config", and again before each reload. */
  | { t: "config"; config: string }
  | { t: "init"; port: number; snapshot: Snapshot; members?: Members }
  /** `rid`: the primary waits for the worker's reply (an admin change). */
  | { t: "backend"; pool: string; id: string; state: SharedState; rid?: number }
  /** `members` first (discovered pools), then the state of every backend. */
  | { t: "snapshot"; snapshot: Snapshot; members?: Members }
  | { t: "reload" | "status" | "metrics" | "shutdown"; rid: number }
  /** SIGUSR1 or POST /logs/reopen at the primary: reopen the access log file (replied to once done). */
  | { t: "reopen-logs"; rid: number }
  /** The primary holds the worker's final metrics: it may exit. */
  | { t: "final-ack" }
  /** ACME runs in the primary: an http-01 challenge to answer on the plain listeners (null: done); replied to once set. */
  | { t: "acme-challenge"; token: string; keyAuthorization: string | null; rid: number }
  /** ACME: a certificate for `name` was stored under acme.storage; load it. */
  | { t: "acme-certificate"; name: string };

export type FromWorker =
  /** First thing at start: the worker loads no config of its own (no yaml, no zod in workers). */
  | { t: "config" }
  | { t: "hello" }
  | { t: "listening"; port: number }
  /** Stopping on its own account (a signal sent to it, the primary gone), not on the primary's request. */
  | { t: "leaving"; why: string }
  /** Drained and about to exit: its metrics as they end, for the primary's last export. */
  | { t: "final"; metrics: MetricsJson }
  | { t: "reply"; rid: number; ok?: boolean; problems?: readonly string[]; view?: WorkerView; metrics?: MetricsJson };

/** A worker's own view of its backends, for the primary's GET /backends. */
export interface WorkerView {
  worker: number;
  pid: number;
  pools: Record<string, { inflight: number; available: number; panic: boolean; backends: Record<string, WorkerBackend> }>;
}

export interface WorkerBackend {
  available: boolean;
  circuit: string;
  ejected: boolean;
  inflight: number;
  /** Tunnels open (absent from a worker of an older version). */
  tunnels?: number;
  latency_ewma_ms: number;
  recent_errors: number;
}

export function sharedState(b: Backend): SharedState {
  return { healthy: b.activeHealthy, draining: b.draining, weight: b.weight };
}

export function snapshot(g: Gateway): Snapshot {
  const out: Snapshot = {};
  for (const p of g.pools.values()) {
    const backends: Record<string, SharedState> = (out[p.name] = {});
    for (const b of p.backends) backends[b.id] = sharedState(b);
  }
  return out;
}

/** Apply the primary's state to one backend; false if this worker has no such backend (mid-reload). */
export function applyBackend(g: Gateway, pool: string, id: string, s: SharedState): boolean {
  const p = g.pools.get(pool);
  const b = p?.backends.find((x) => x.id === id);
  if (!p || !b) return false;
  const reweighted = b.weight !== s.weight;
  b.activeHealthy = s.healthy;
  b.draining = s.draining;
  b.weight = s.weight;
  // A new weight with the same members: weighted strategies rebuild their tables.
  p.refresh(reweighted);
  return true;
}

/** The members of the discovered pools of `g` (or of `only`). */
export function members(g: Gateway, only?: Pool): Members {
  const out: Members = {};
  for (const p of only ? [only] : g.pools.values()) {
    if (!p.discovery) continue;
    out[p.name] = p.backends.map((b) => ({ url: b.url, id: b.id, weight: b.weight, labels: { ...b.labels } }));
  }
  return out;
}

/** A worker takes the primary's discovered members (their state follows in the same message). */
export function applyMembers(g: Gateway, m: Members | undefined): void {
  for (const [pool, list] of Object.entries(m ?? {})) g.pools.get(pool)?.discovery?.follow(list);
}

export function applySnapshot(g: Gateway, snap: Snapshot): void {
  for (const [pool, backends] of Object.entries(snap)) {
    for (const [id, s] of Object.entries(backends)) applyBackend(g, pool, id, s);
  }
}

export function workerView(g: Gateway, worker: number, pid: number): WorkerView {
  const pools: WorkerView["pools"] = {};
  for (const p of g.pools.values()) {
    const backends: Record<string, WorkerBackend> = {};
    for (const b of p.backends) {
      backends[b.id] = {
        available: b.isAvailable(),
        circuit: b.circuit,
        ejected: b.ejectedUntil !== 0,
        inflight: b.inflight,
        tunnels: b.tunnels,
        latency_ewma_ms: Math.round(b.latencyEwma * 100) / 100,
        recent_errors: b.recentErrors,
      };
    }
    pools[p.name] = { inflight: p.inflight, available: p.available.length, panic: p.panicking, backends };
  }
  return { worker, pid, pools };
}

const SEVERITY: Record<string, number> = { closed: 0, "half-open": 1, open: 2 };

/**
 * The admin API's description of pools and backends on the primary: its own health view (probes,
 * drain, weight) with the workers' circuit, ejection and in-flight merged in. A backend is
 * `available` only if every worker may pick it; `circuit` is the worst state any worker has;
 * `workers` lists each worker's own view.
 */
export function clusterView(views: readonly WorkerView[]) {
  const backend = (p: Pool, b: Backend) => {
    const s = b.status();
    const per = views.map((v) => ({ worker: v.worker, pid: v.pid, ...v.pools[p.name]?.backends[b.id] }));
    const seen = per.filter((x) => x.circuit !== undefined) as (WorkerBackend & { worker: number; pid: number })[];
    const ejected = seen.some((x) => x.ejected);
    let circuit = "closed";
    for (const x of seen) if ((SEVERITY[x.circuit] ?? 0) > SEVERITY[circuit]!) circuit = x.circuit;
    return {
      ...s,
      available: s.available && seen.every((x) => x.available),
      healthy: s.active_healthy && !ejected,
      ejected,
      circuit,
      inflight: seen.reduce((n, x) => n + x.inflight, 0),
      tunnels: seen.reduce((n, x) => n + (x.tunnels ?? 0), 0),
      recent_errors: seen.reduce((n, x) => n + x.recent_errors, 0),
      workers: per,
    };
  };
  const pool = (p: Pool) => {
    const backends = p.backends.map((b) => backend(p, b));
    return {
      ...poolStatus(p),
      inflight: views.reduce((n, v) => n + (v.pools[p.name]?.inflight ?? 0), 0),
      available: backends.filter((b) => b.available).length,
      panic: views.some((v) => v.pools[p.name]?.panic),
      backends,
    };
  };
  return { pool, backend };
}
