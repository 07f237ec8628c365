import { afterAll, expect, test } from "bun:test";
import type { Server } from "bun";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";

/**
 * The headline test: 20,000 idempotent GETs at concurrency 50 through a pool of three while
 * one backend is killed and another is made slow, then restarted. No client request may fail.
 */
const TOTAL = 20_000;
const CONCURRENCY = 50;

interface Chaotic {
  port: number;
  slow: boolean;
  server: Server<undefined> | undefined;
  hits: number;
}

function serveOn(b: Chaotic, name: string): void {
  b.server = Bun.serve({
    hostname: "127.0.0.1",
    port: b.port,
    idleTimeout: 0,
    async fetch(req) {
      b.hits++;
      if (b.slow) await Bun.sleep(1_000); // the fault being injected, not synchronisation
      return new Response(`${name} ${new URL(req.url).pathname}`, { headers: { "x-backend": name } });
    },
  });
  b.port = b.server.port!;
}

const backends: Chaotic[] = [0, 1, 2].map(() => ({ port: 0, slow: false, server: undefined, hits: 0 }));
let fulcrum: InProcess | undefined;

afterAll(async () => {
  await fulcrum?.stop();
  for (const b of backends) await b.server?.stop(true);
});

test("20,000 GETs at concurrency 50: one backend killed, one slowed then restarted, zero failures", async () => {
  backends.forEach((b, i) => serveOn(b, `b${i + 1}`));
  fulcrum = await startFulcrum(`pools:
  web:
    backends: [${backends.map((b) => `"http://127.0.0.1:${b.port}"`).join(", ")}]
    health: { path: /healthz, interval: 100ms, timeout: 150ms, healthy_threshold: 2, unhealthy_threshold: 2 }
    outlier_detection: { consecutive_failures: 3, ejection_time: 500ms }
    retry: { attempts: 3, per_try_timeout: 250ms, backoff: { base: 5ms, max: 50ms } }
    timeouts: { connect: 250ms, response: 5s }
log: { access_log: false, level: warning }
`);
  const [killed, slowed] = [backends[0]!, backends[1]!];
  const statuses = new Map<number, number>();
  const latencies = new Float64Array(TOTAL);
  let next = 0;
  const events: string[] = [];

  const chaos = async (n: number) => {
    if (n === 4_000) {
      events.push(`kill b1 at request ${n}`);
      await killed.server!.stop(true);
      killed.server = undefined;
    } else if (n === 8_000) {
      events.push(`slow b2 at request ${n}`);
      slowed.slow = true;
    } else if (n === 11_000) {
      events.push(`stop b2 at request ${n}`);
      await slowed.server!.stop(true);
    } else if (n === 12_000) {
      events.push(`restart b2 at request ${n}`);
      slowed.slow = false;
      serveOn(slowed, "b2");
    }
  };

  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < TOTAL) {
        const n = next++;
        await chaos(n);
        const t0 = performance.now();
        let status = 0;
        try {
          const r = await fetch(`${fulcrum!.url}/item/${n}`);
          await r.arrayBuffer();
          status = r.status;
        } catch {
          status = -1;
        }
        latencies[n] = performance.now() - t0;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  const elapsed = performance.now() - started;
  const sorted = [...latencies].sort((a, b) => a - b);
  const p = (q: number) => sorted[Math.min(TOTAL - 1, Math.floor(q * TOTAL))]!.toFixed(1);
  console.info(
    `chaos: ${TOTAL} requests in ${(elapsed / 1000).toFixed(1)}s (${Math.round(TOTAL / (elapsed / 1000))}/s), ` +
      `p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${sorted[TOTAL - 1]!.toFixed(1)} ms; ` +
      `statuses ${JSON.stringify(Object.fromEntries(statuses))}; hits ${backends.map((b) => b.hits).join("/")}; ${events.join(", ")}`,
  );
  expect(Object.fromEntries(statuses)).toEqual({ 200: TOTAL });
  // The restarted backend is back in rotation by the end.
  const pool = fulcrum.server.gateway.pools.get("web")!;
  expect(pool.backends[1]!.activeHealthy).toBe(true);
  expect(pool.backends[0]!.activeHealthy).toBe(false);
}, 120_000);
