/**
 * The mutation fuzzer over the differential oracle: cases made from the corpus by mutate.ts, each
 * judged as a corpus case is (judge.ts). Shared by tests/http1/fuzz.test.ts (10,000 cases) and
 * bench/fuzz-http1.ts (as many as asked). Case `i` of seed `s` depends on nothing else, so one
 * case replays alone: FUZZ_SEED=s FUZZ_CASE=i.
 */
import type { Buffer } from "node:buffer";
import { loadCorpus } from "./corpus.ts";
import { judge, type Judgement } from "./judge.ts";
import { fuzzCase } from "./mutate.ts";
import { mapLimit, report, type Sides, summary, tally } from "./run.ts";

export interface FuzzRun {
  seed: number;
  cases: number;
  ms: number;
  summary: string;
  /** Reports of the failed cases (at most `maxReports`), each with its replay line. */
  failures: string[];
  failed: number;
}

/** A seed from FUZZ_SEED, else a new one (printed by the caller, so a failure can be replayed). */
export function fuzzSeed(): number {
  const env = process.env.FUZZ_SEED;
  return env !== undefined && env !== "" ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

export async function fuzz(
  sides: Sides,
  opts: { seed: number; cases: number; only?: number; concurrency?: number; maxReports?: number; onProgress?: (done: number) => void },
): Promise<FuzzRun> {
  const corpus: Buffer[] = loadCorpus().map((c) => c.bytes);
  const indexes = opts.only !== undefined ? [opts.only] : Array.from({ length: opts.cases }, (_, i) => i);
  const t0 = performance.now();
  let done = 0;
  const failures: string[] = [];
  let failed = 0;
  const judgements: Judgement[] = await mapLimit(indexes, opts.concurrency ?? 12, async (i) => {
    const c = fuzzCase(opts.seed, i, corpus);
    const j = await judge(c.bytes, sides.oracle, sides.fulcrum);
    if (j.problems.length > 0) {
      failed++;
      if (failures.length < (opts.maxReports ?? 10)) {
        failures.push(report(`fuzz case ${i} (replay: FUZZ_SEED=${opts.seed} FUZZ_CASE=${i}; ${c.steps.join(", ")})`, c.bytes, j));
      }
    }
    if (++done % 1000 === 0) opts.onProgress?.(done);
    return j;
  });
  return {
    seed: opts.seed,
    cases: indexes.length,
    ms: performance.now() - t0,
    summary: summary(tally(judgements)),
    failures,
    failed,
  };
}
