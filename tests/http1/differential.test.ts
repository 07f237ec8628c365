/**
 * The differential test of Fulcrum's HTTP/1.1 request framing against Node's (llhttp in strict
 * mode): every case of tests/http1/corpus/ goes to Node's own `http` server and through Fulcrum
 * to a recording backend, and the test fails when Fulcrum forwards a request llhttp refused, or a
 * different number of requests, bodies, methods or targets, or refuses what llhttp accepts for a
 * reason not listed in differential/stricter.ts. The rules are in differential/judge.ts; the
 * corpus and its format in tests/http1/corpus/README.md.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { loadCorpus } from "./differential/corpus.ts";
import { judge } from "./differential/judge.ts";
import { mapLimit, report, type Sides, startSides, summary, tally } from "./differential/run.ts";

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

ownListener("the corpus (llhttp's request tests, the smuggling literature) through Node's parser and through Fulcrum", async () => {
  const cases = loadCorpus();
  const t0 = performance.now();
  const judgements = await mapLimit(cases, 12, (c) => judge(c.bytes, sides.oracle, sides.fulcrum));
  const failures = judgements.flatMap((j, i) => {
    const c = cases[i]!;
    return j.problems.length === 0 ? [] : [report(`${c.id} ${c.name} (${c.origin})`, c.bytes, j)];
  });
  console.log(`differential (${sides.oracle.versions}): ${summary(tally(judgements))} in ${Math.round(performance.now() - t0)} ms`);
  if (failures.length > 0) console.log(failures.join("\n\n"));
  expect(failures).toEqual([]);
  expect(sides.fulcrum.internalErrors()).toEqual([]);
  expect(cases.length).toBeGreaterThanOrEqual(250);
}, 120_000);
