// The retry-budget scenario of issue 18 item 4, at full size (docs/resilience.md "Retries and the
// retry budget"):
//   bun bench/retry-budget.ts [--runs 10] [--requests 6000] [--concurrency 50]
//                             [--kill-at 1000] [--slow-at 2000] [--recover-at 3000] [--root DIR]
// Three backends on loopback; Fulcrum (`bun main.ts run` of --root, default this checkout) with
// `retry.attempts: 3`, `timeouts.response: 1s`, health checks every 200 ms, default workers and
// the default budget. b1 is killed at request --kill-at; b2's application turns slow (2 s, its
// /healthz stays fast) at --slow-at; both recover at --recover-at. Prints each run's non-2xx
// count and the retries per worker; exits 1 if any run had one. Processes are stopped by pid.
import { runRetryScenario } from "../tests/helpers/retry-scenario.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const rootAt = process.argv.indexOf("--root");
const root = rootAt > 0 ? process.argv[rootAt + 1] : undefined;
const runs = arg("--runs", 10);
const requests = arg("--requests", 6_000);
const options = {
  requests,
  concurrency: arg("--concurrency", 50),
  rate: arg("--rate", 100),
  killAt: arg("--kill-at", 2_000),
  slowAt: arg("--slow-at", 5_000),
  recoverAt: arg("--recover-at", 9_000),
  root,
  timeoutMs: 600_000,
};
console.log(`retry-budget: ${JSON.stringify({ ...options, runs })}`);
let failedRuns = 0;
for (let run = 1; run <= runs; run++) {
  const r = await runRetryScenario(options);
  if (r.failures.length) failedRuns++;
  const workers = Object.entries(r.perWorker)
    .map(([w, s]) =>
      `w${w}: ${s.retries} retries / ${s.requests} requests (${
        ((100 * s.retries) / s.requests).toFixed(1)
      }%), ${s.refused} refused, ${s.beyondRatio} beyond 20% in a 10 s window`
    )
    .join("; ");
  const errors = [...new Set(r.failures.map((f) => `${f.status} ${f.error ?? ""}`))].join(", ");
  console.log(
    `run ${run}: ${r.failures.length} non-2xx${errors ? ` (${errors})` : ""} in ${(r.elapsedMs / 1000).toFixed(1)} s, ` +
      `workers ${r.workers}, statuses ${JSON.stringify(r.statuses)}, events ${JSON.stringify(r.events)}; ${workers}`,
  );
}
console.log(`${runs - failedRuns} of ${runs} runs with zero non-2xx`);
process.exit(failedRuns ? 1 : 0);
