/**
 * Active health checks: each backend is probed on its own loop (never two probes of one
 * backend at once), all backends concurrently, with jitter so they do not fire in lockstep.
 * A backend flips only after `healthy_threshold` successes or `unhealthy_threshold` failures
 * in a row (HAProxy's rise/fall), and each flip is reported once with its reason.
 */
import type { Clock, Timer } from "../lib/clock.ts";
import type { UpstreamTarget } from "../upstream/client.ts";

/** node:http for the probes, loaded by the first one (~4 MiB and ~15 ms a process without checks does not pay). */
let nodeModules:
  | Promise<
    {
      http: typeof import("node:http");
      https: typeof import("node:https");
      nodeTlsOptions: typeof import("../upstream/node.ts").nodeTlsOptions;
    }
  >
  | undefined;
const nodeHttp = () =>
  nodeModules ??= Promise.all([import("node:http"), import("node:https"), import("../upstream/node.ts")]).then(([http, https, node]) => ({
    http: http.default,
    https: https.default,
    nodeTlsOptions: node.nodeTlsOptions,
  }));

export interface HealthConfig {
  method: string;
  path: string;
  host?: string | undefined;
  interval: number;
  timeout: number;
  healthy_threshold: number;
  unhealthy_threshold: number;
  /** Accepted status ranges, inclusive. */
  expect_status: readonly (readonly [number, number])[];
  /** Substring, or a RegExp when the config wrote `/…/`. */
  expect_body?: string | RegExp | undefined;
  /** Up to this much random delay is added to each interval. */
  jitter: number;
  /** `unknown`: not routed to until the first probe passes. */
  initial: "healthy" | "unknown";
}

export interface ProbeResult {
  /** Wall-clock time of the probe, ms since the epoch. */
  readonly at: number;
  readonly ok: boolean;
  readonly status?: number;
  readonly latencyMs: number;
  /** `status 200`, `status 503 not in 200-399`, `timeout after 1000ms`, `connect: ECONNREFUSED`, … */
  readonly reason: string;
}

/** What the checker needs of a backend. */
export interface Probed {
  readonly id: string;
  readonly target: UpstreamTarget;
  readonly hostHeader: string;
  activeHealthy: boolean;
  /** `passed`/`failed` count every probe since start (for metrics). */
  health: { rise: number; fall: number; known: boolean; probes: ProbeResult[]; passed: number; failed: number };
}

const KEEP_PROBES = 10;
const MAX_BODY = 64 * 1024;

export class HealthChecker<B extends Probed> {
  #timers = new Map<B, Timer>();
  #inflight = new Set<Promise<void>>();
  #stopped = false;

  constructor(
    private readonly backends: () => readonly B[],
    readonly config: HealthConfig,
    private readonly clock: Clock,
    /** Called once per flip, with the probe that caused it. */
    private readonly onFlip: (backend: B, healthy: boolean, result: ProbeResult) => void,
  ) {}

  /** Start probing every backend; the first probe of each comes after a random part of one interval. */
  start(): void {
    for (const b of this.backends()) this.#schedule(b, this.clock.random() * this.config.interval);
  }

  /** Start probing a backend added by a reload or by discovery (`delay` 0: probe now). */
  add(b: B, delay = this.clock.random() * this.config.interval): void {
    if (!this.#stopped && !this.#timers.has(b)) this.#schedule(b, delay);
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) this.clock.clearTimeout(t);
    this.#timers.clear();
  }

  /** Resolves when no probe is running (for tests driving a manual clock). */
  async settled(): Promise<void> {
    while (this.#inflight.size) await Promise.all(this.#inflight);
  }

  /** Probe one backend now and apply the result. */
  async runOnce(b: B): Promise<ProbeResult> {
    const result = await this.probe(b);
    // A probe that outlived stop() (a reload replaced this pool) must not decide any more.
    if (!this.#stopped) this.apply(b, result);
    return result;
  }

  #schedule(b: B, delay: number): void {
    const timer = this.clock.setTimeout(() => {
      this.#timers.delete(b);
      if (this.#stopped || !this.backends().includes(b)) return;
      const p = this.runOnce(b).then(
        () => {
          this.#inflight.delete(p);
          if (!this.#stopped) this.#schedule(b, this.config.interval + this.clock.random() * this.config.jitter);
        },
      );
      this.#inflight.add(p);
    }, delay);
    this.#timers.set(b, timer);
  }

  /** Update streaks and flip the backend when a threshold is reached. */
  apply(b: B, r: ProbeResult): void {
    const h = b.health;
    h.probes.push(r);
    if (h.probes.length > KEEP_PROBES) h.probes.shift();
    if (r.ok) {
      h.passed++;
      h.rise++;
      h.fall = 0;
    } else {
      h.failed++;
      h.fall++;
      h.rise = 0;
    }
    const first = !h.known;
    h.known = true;
    // The first result of a backend that started `unknown` (or joined unhealthy, by discovery) decides at once.
    if (first && (this.config.initial === "unknown" || !b.activeHealthy)) {
      if (b.activeHealthy !== r.ok) {
        b.activeHealthy = r.ok;
        this.onFlip(b, r.ok, r);
      }
      return;
    }
    if (!b.activeHealthy && r.ok && h.rise >= this.config.healthy_threshold) {
      b.activeHealthy = true;
      this.onFlip(b, true, r);
    } else if (b.activeHealthy && !r.ok && h.fall >= this.config.unhealthy_threshold) {
      b.activeHealthy = false;
      this.onFlip(b, false, r);
    }
  }

  /** One HTTP probe on a fresh connection, bounded by `timeout`. */
  async probe(b: B): Promise<ProbeResult> {
    const { http, https, nodeTlsOptions } = await nodeHttp();
    const c = this.config;
    const started = this.clock.now();
    const at = Date.now();
    const t = b.target;
    return new Promise<ProbeResult>((resolve) => {
      let done = false;
      const finish = (ok: boolean, reason: string, status?: number) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        req.destroy();
        resolve({ at, ok, reason, latencyMs: Math.round((this.clock.now() - started) * 100) / 100, ...(status ? { status } : {}) });
      };
      const req = (t.protocol === "https:" ? https : http).request({
        protocol: t.protocol,
        hostname: t.hostname,
        port: t.port,
        method: c.method,
        path: t.basePath + c.path,
        headers: { host: c.host ?? b.hostHeader, "user-agent": "fulcrum-health-check", connection: "close" },
        agent: false,
        // The pool's TLS settings (pools.<name>.tls), as requests use them.
        ...(t.tls !== undefined ? nodeTlsOptions(t.hostname, t.tls) : {}),
      });
      // A real timer: the probe's own deadline is wall-clock, also under a manual clock.
      const timer = setTimeout(() => finish(false, `timeout after ${c.timeout}ms`), c.timeout);
      req.on("error", (e: NodeJS.ErrnoException) => finish(false, `connect: ${e.code ?? e.message}`));
      req.on("response", (res) => {
        const status = res.statusCode ?? 0;
        const statusOk = c.expect_status.some(([lo, hi]) => status >= lo && status <= hi);
        if (!statusOk) {
          res.resume();
          return finish(false, `status ${status} not in ${formatRanges(c.expect_status)}`, status);
        }
        if (c.expect_body === undefined) {
          res.resume();
          return finish(true, `status ${status}`, status);
        }
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (body.length < MAX_BODY) body += chunk;
        });
        res.on("error", (e) => finish(false, `body: ${e.message}`, status));
        res.on("end", () => {
          const want = c.expect_body!;
          const ok = typeof want === "string" ? body.includes(want) : want.test(body);
          finish(ok, ok ? `status ${status}, body matched` : `status ${status}, body did not match ${String(want)}`, status);
        });
      });
      req.end();
    });
  }
}

export function formatRanges(ranges: readonly (readonly [number, number])[]): string {
  return ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(",");
}
