/**
 * The seeded mutation fuzzer over the differential oracle (see differential.test.ts): 10,000
 * cases made from the corpus, each sent to Node's parser and through Fulcrum and judged by the
 * same rules. The seed is new on each run and printed; FUZZ_SEED=<seed> replays a run,
 * FUZZ_SEED=<seed> FUZZ_CASE=<i> one case of it. bench/fuzz-http1.ts runs longer ones.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { fuzz, fuzzSeed } from "./differential/fuzz.ts";
import { type Sides, startSides } from "./differential/run.ts";

const CASES = 10_000;
// Of Fulcrum's own listener (the default front), whose parser (core/http1) the judge's model is:
// skipped on the Bun.serve front (FULCRUM_BUN_SERVE=1), which is not held to llhttp.
const ownListener = process.env.FULCRUM_BUN_SERVE === "1" ? test.skip : test;

let sides: Sides;
beforeAll(async () => {
  if (process.env.FULCRUM_BUN_SERVE !== "1") sides = await startSides(6);
});
afterAll(async () => {
  await sides?.stop();
});

// In the test's name, so that the summary line of a failed run (all a CI log may keep) replays it.
const seed = fuzzSeed();
ownListener(
  `${CASES} mutated cases (FUZZ_SEED=${seed}): Fulcrum never forwards what llhttp refuses, nor differs on what both accept`,
  async () => {
    const only = process.env.FUZZ_CASE ? Number(process.env.FUZZ_CASE) : undefined;
    console.log(`fuzz: FUZZ_SEED=${seed}${only !== undefined ? ` FUZZ_CASE=${only}` : ""}`);
    const run = await fuzz(sides, { seed, cases: CASES, only });
    console.log(`fuzz (seed ${seed}): ${run.summary} in ${Math.round(run.ms)} ms`);
    if (run.failures.length > 0) console.log(run.failures.join("\n\n"));
    expect(run.failed).toBe(0);
    expect(sides.fulcrum.internalErrors()).toEqual([]);
  },
  180_000,
);
