/**
 * The admin API (Hono), on its own listener and never on the proxy's: liveness, readiness,
 * Prometheus metrics, the backends with why they are up or down, drain/enable/weight at run
 * time, reload, and the effective config with secrets masked.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Hono, type Context } from "hono";
import type { Logger } from "@logtape/logtape";
import { poolStatus } from "./pool-status.ts";
import type { Config } from "../config/schema.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import type { Backend, Pool } from "../pool/pool.ts";
import type { TlsManager } from "../tls/manager.ts";

/** What the admin API needs of the running server. */
export interface AdminTarget {
  readonly gateway: { readonly pools: ReadonlyMap<string, Pool> };
  /** Re-read the config and plugins; a rejected one leaves the running configuration serving. */
  reload?: () => Promise<{ readonly ok: boolean; readonly problems: readonly string[]; readonly restartRequired?: readonly string[] }>;
  /** The config in effect (after a reload, the new one). */
  readonly config?: Config;
  /** With several worker processes (core/cluster/): their view of the backends, and admin changes passed on. */
  readonly cluster?: AdminCluster;
  /** The certificates of the TLS listeners (GET /certificates) and the listeners' counts (/metrics). */
  readonly tls?: TlsManager;
}

/** What the admin API needs of a primary process whose workers serve the traffic. */
export interface AdminCluster {
  /** Gather the workers' circuit, ejection and in-flight state; returns how to describe pools and backends with it. */
  view(): Promise<{ pool(p: Pool): Record<string, unknown>; backend(p: Pool, b: Backend): Record<string, unknown> }>;
  /** An operator drained, enabled or re-weighted `backend`: tell every worker (resolves once they applied it). */
  changed(pool: Pool, backend: Backend): Promise<void>;
  /** Reopen the access log file here and in every worker (resolves once they have). */
  reopenLogs?(): Promise<void>;
}

export interface AdminState {
  /** Config and plugins are loaded and the proxy listener is up. */
  ready: boolean;
  /** Shutdown has begun: /ready answers 503 so load balancers stop sending. */
  draining: boolean;
}

/** Read per request: a reload changes `config`, `metrics` and `token` in place (core/admin/observability.ts). */
export interface AdminOptions {
  config: Config;
  metrics: Metrics | undefined;
  /** Bearer token for everything but /health and /ready; undefined: no token. */
  token: string | undefined;
  state: AdminState;
  /** The running server; undefined until it is up. */
  target: () => AdminTarget | undefined;
  logger: Logger;
  /** An operator drained, enabled or re-weighted a backend, and every worker has applied it (the state file is saved). */
  onOperatorChange?: () => void;
  /** Reopen this process's access log file (POST /logs/reopen; a primary's workers through {@link AdminCluster.reopenLogs}). */
  reopenLogs?: () => void;
}

const OPEN_PATHS = new Set(["/health", "/ready"]);
const ENDPOINTS = [
  "GET /health",
  "GET /ready",
  "GET /metrics",
  "GET /backends",
  "GET /backends/{pool}/{id}",
  "POST /backends/{pool}/{id}/drain",
  "POST /backends/{pool}/{id}/enable",
  'PUT /backends/{pool}/{id}/weight  {"weight": N}',
  "POST /reload",
  "POST /logs/reopen",
  "GET /config",
  "GET /certificates",
];
const MAX_WEIGHT = 1_000_000;

/** The admin app; listen.ts serves it, or call `app.request()` in tests. */
export function createAdminApp(o: AdminOptions): Hono {
  const app = new Hono();
  let token: string | undefined;
  let expected: Buffer | undefined;

  app.use("*", async (c, next) => {
    if (o.token !== token) {
      token = o.token;
      expected = token === undefined ? undefined : digest(token);
    }
    if (expected === undefined || OPEN_PATHS.has(c.req.path)) return next();
    const auth = c.req.header("authorization") ?? "";
    const given = auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
    // Compare digests: equal length, constant time, whatever was sent.
    if (given && timingSafeEqual(digest(given), expected)) return next();
    return c.json({ error: "missing or wrong bearer token" }, 401, { "www-authenticate": 'Bearer realm="fulcrum-admin"' });
  });

  app.get("/health", (c) => c.json({ status: "ok" }));

  app.get("/ready", (c) => {
    const s = o.state;
    if (s.draining) return c.json({ status: "draining" }, 503);
    if (!s.ready || !o.target()) return c.json({ status: "starting" }, 503);
    return c.json({ status: "ready" });
  });

  app.get("/metrics", async (c) => {
    if (!o.metrics) return c.json({ error: "metrics are off (admin.metrics: false)" }, 404);
    const { text, contentType } = await o.metrics.render();
    return c.body(text, 200, { "content-type": contentType });
  });

  app.get("/backends", async (c) => {
    const t = o.target();
    if (!t) return c.json({ error: "not serving yet" }, 503);
    const view = await t.cluster?.view();
    const pools: Record<string, unknown> = {};
    for (const p of t.gateway.pools.values()) pools[p.name] = view ? view.pool(p) : poolStatus(p);
    return c.json({ pools });
  });

  /** Finds the pool and backend named in the path, or answers 404 naming what exists. */
  const find = (c: Context): { pool: Pool; backend: Backend } | Response => {
    const t = o.target();
    if (!t) return c.json({ error: "not serving yet" }, 503);
    const poolName = c.req.param("pool")!;
    const id = c.req.param("id")!;
    const pool = t.gateway.pools.get(poolName);
    if (!pool) return c.json({ error: `no pool named "${poolName}"`, pools: [...t.gateway.pools.keys()] }, 404);
    const backend = pool.backends.find((b) => b.id === id);
    if (!backend) return c.json({ error: `pool "${poolName}" has no backend "${id}"`, backends: pool.backends.map((b) => b.id) }, 404);
    return { pool, backend };
  };

  app.get("/backends/:pool/:id", async (c) => {
    const f = find(c);
    if (f instanceof Response) return f;
    const view = await o.target()?.cluster?.view();
    return c.json(view ? view.backend(f.pool, f.backend) : f.backend.status());
  });

  // Drain takes a backend out of rotation now; requests already sent to it finish (watch
  // `inflight` reach 0). Enable puts it back.
  const setDraining = async (c: Context, draining: boolean) => {
    const f = find(c);
    if (f instanceof Response) return f;
    f.backend.draining = draining;
    f.pool.refresh();
    await o.target()?.cluster?.changed(f.pool, f.backend);
    o.onOperatorChange?.();
    const props = { pool: f.pool.name, backend: f.backend.id };
    if (draining) o.logger.warning("backend {backend} drained by the admin API", props);
    else o.logger.info("backend {backend} enabled by the admin API", props);
    return c.json(f.backend.status());
  };
  app.post("/backends/:pool/:id/drain", (c) => setDraining(c, true));
  app.post("/backends/:pool/:id/enable", (c) => setDraining(c, false));

  const setWeight = async (c: Context) => {
    const f = find(c);
    if (f instanceof Response) return f;
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.json({ error: 'the body must be JSON like {"weight": 3}' }, 400);
    }
    const w = (body as { weight?: unknown } | null)?.weight;
    // 0 is a soft drain, as in the config: no new requests, still checked, sticky clients stay.
    if (typeof w !== "number" || !Number.isInteger(w) || w < 0 || w > MAX_WEIGHT) {
      return c.json(
        { error: `weight must be a whole number from 0 to ${MAX_WEIGHT} (0 drains softly), got ${JSON.stringify(w ?? null)}` },
        400,
      );
    }
    const from = f.backend.weight;
    f.backend.weight = w;
    // Same members, new weight: force the strategy to rebuild its tables.
    f.pool.refresh(true);
    await o.target()?.cluster?.changed(f.pool, f.backend);
    o.onOperatorChange?.();
    o.logger.info("backend {backend} weight {from} → {to} by the admin API", { pool: f.pool.name, backend: f.backend.id, from, to: w });
    return c.json(f.backend.status());
  };
  app.put("/backends/:pool/:id/weight", setWeight);
  app.post("/backends/:pool/:id/weight", setWeight);

  app.post("/reload", async (c) => {
    const t = o.target();
    if (!t) return c.json({ error: "not serving yet" }, 503);
    if (typeof t.reload !== "function") {
      return c.json({ error: "reload is not available in this build: restart the process to apply a new config" }, 501);
    }
    try {
      const r = await t.reload();
      const answer = { ok: r.ok, problems: r.problems, restart_required: r.restartRequired ?? [] };
      if (r.ok) return c.json({ status: "reloaded", ...answer });
      return c.json({ status: "rejected", ...answer }, 422);
    } catch (e) {
      const problems = (e as { problems?: unknown }).problems;
      return c.json({ status: "failed", error: (e as Error).message, ...(Array.isArray(problems) ? { problems } : {}) }, 422);
    }
  });

  // logrotate's postrotate without a signal (a container, another user): as SIGUSR1.
  app.post("/logs/reopen", async (c) => {
    const t = o.target();
    const cfg = t?.config ?? o.config;
    if (t?.cluster?.reopenLogs) await t.cluster.reopenLogs();
    else {
      o.reopenLogs?.();
      o.logger.info("reopened the access log", { file: cfg.log.access_log_file ?? null });
    }
    return c.json({ status: "reopened", access_log_file: cfg.log.access_log_file ?? null });
  });

  // Names, issuer, not-after, source (file or acme) and the last renewal error of every certificate.
  app.get("/certificates", (c) => c.json({ certificates: o.target()?.tls?.status() ?? [] }));

  app.get("/config", (c) =>
    c.body(JSON.stringify(maskSecrets(o.target()?.config ?? o.config), jsonReplacer, 2), 200, {
      "content-type": "application/json",
    }));

  app.notFound((c) => c.json({ error: "not found", endpoints: ENDPOINTS }, 404));
  app.onError((err, c) => {
    o.logger.error("admin API error", { path: c.req.path, error: String(err) });
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

const SECRET_KEY = /token|secret|password|passwd|authorization|api[-_]?key|cookie/i;

/** A copy of the config with secrets replaced by "***": trace export headers, the admin token, any key that names a secret. */
export function maskSecrets(config: unknown): unknown {
  const walk = (v: unknown, path: string[]): unknown => {
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, String(i)]));
    if (v === null || typeof v !== "object" || v instanceof RegExp) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const inHeaders = path.at(-1) === "headers" && path.at(-2) === "traces";
      out[k] = (inHeaders || SECRET_KEY.test(k)) && x !== undefined && typeof x !== "object" ? "***" : walk(x, [...path, k]);
    }
    return out;
  };
  return walk(config, []);
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof RegExp) return `/${value.source}/`;
  if (value === Infinity) return "unlimited";
  return value;
}
