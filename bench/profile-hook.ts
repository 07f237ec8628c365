// A preload that lets a running Fulcrum process be profiled with JavaScriptCore's sampling
// profiler (bun:jsc `profile`), which, unlike `perf` here, names Bun's JIT-compiled functions:
//   bun --preload ./bench/profile-hook.ts main.ts run --config fulcrum.yaml
//   kill -USR2 <pid>        (while load runs; PROFILE_SECS, PROFILE_US, PROFILE_OUT tune it)
// writes PROFILE_OUT.N.json (the raw stacks) and PROFILE_OUT.N.txt (JSC's own summaries) after
// PROFILE_SECS seconds; `bun bench/profile-report.ts PROFILE_OUT.N.json` reads the stacks.
// Not for production: the profiler stops the JS thread at every sample.
import { profile } from "bun:jsc";
import { writeFileSync } from "node:fs";

let n = 0;
let busy = false;
process.on("SIGUSR2", async () => {
  if (busy) return;
  busy = true;
  const secs = Number(process.env.PROFILE_SECS ?? 5);
  const out = `${process.env.PROFILE_OUT ?? "/tmp/fulcrum-profile"}.${process.pid}.${n++}`;
  try {
    const res = await profile(() => new Promise((r) => setTimeout(r, secs * 1000)), Number(process.env.PROFILE_US ?? 200));
    writeFileSync(`${out}.json`, JSON.stringify(res.stackTraces));
    writeFileSync(`${out}.txt`, `${res.functions}\n\n${res.bytecodes}`);
    process.stderr.write(`profile written to ${out}.json\n`);
  } finally {
    busy = false;
  }
});
