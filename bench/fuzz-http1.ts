// `bun bench/fuzz-http1.ts [--cases N] [--seed S] [--slots K] [--concurrency C] [--reports R]`: a
// longer run of the HTTP/1.1 request-framing fuzzer than `npm test`'s 10,000 cases (default
// 200,000): mutated corpus cases sent to Node's http server (llhttp, strict) and through Fulcrum,
// judged by tests/http1/differential/judge.ts. Needs `node` on PATH. Prints the seed, progress,
// and a report of each failed case (up to R) with the line that replays it in `npm test`'s fuzzer
// (FUZZ_SEED=S FUZZ_CASE=i bun test tests/http1/fuzz.test.ts). Exits 1 when a case failed.
import { fuzz } from "../tests/http1/differential/fuzz.ts";
import { startSides } from "../tests/http1/differential/run.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}

const cases = arg("cases", 200_000);
const seed = arg("seed", (Math.random() * 2 ** 32) >>> 0) >>> 0;
const slots = arg("slots", 6);
const concurrency = arg("concurrency", 12);
const maxReports = arg("reports", 20);

console.log(`fuzz-http1: --cases ${cases} --seed ${seed} (${slots} Fulcrum slots, ${concurrency} cases at a time)`);
const sides = await startSides(slots);
console.log(`oracle: ${sides.oracle.versions}`);
const t0 = performance.now();
const run = await fuzz(sides, {
  seed,
  cases,
  concurrency,
  maxReports,
  onProgress(done) {
    if (done % 10_000 === 0) {
      const s = (performance.now() - t0) / 1000;
      console.log(`  ${done} cases, ${s.toFixed(0)} s (${Math.round(done / s)}/s)`);
    }
  },
});
const internal = sides.fulcrum.internalErrors();
await sides.stop();
console.log(run.failures.join("\n\n"));
if (internal.length) console.log(`errors thrown inside Fulcrum (logged at most once per 10 s each):\n${internal.join("\n\n")}`);
console.log(`fuzz-http1 (seed ${seed}): ${run.summary} in ${(run.ms / 1000).toFixed(1)} s`);
process.exit(run.failed > 0 || internal.length > 0 ? 1 : 0);
