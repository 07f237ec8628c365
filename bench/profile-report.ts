// Reads a profile from bench/profile-hook.ts and prints where the JavaScript thread's samples
// landed: self time per function (lines merged; a native function named with its caller), with
// the samples in socket writes set apart, since those are the kernel's work, which nginx pays
// too. `--callers name[,name]` lists the stacks above those functions.
//   bun bench/profile-report.ts /tmp/fulcrum-profile.1234.0.json [--top 40] [--callers subarray]
// Read it with care: samples are taken on a timer whether or not the thread is on a CPU, so a
// native call that blocks (a write, fetch handing a body to its thread) shows more than its CPU.
export {};
const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith("--"));
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (!file) {
  console.error("usage: bun bench/profile-report.ts PROFILE.json [--top N] [--callers a,b]");
  process.exit(2);
}
interface Frame {
  name: string;
  sourceID?: number;
  line?: number;
}
const st = JSON.parse(await Bun.file(file).text()) as { traces: { frames: Frame[] }[]; sources: { sourceID: number; url?: string }[] };
const root = `${process.cwd()}/`;
const src = new Map(st.sources.map((s) => [s.sourceID, (s.url ?? "?").replace(root, "")]));
const isNative = (f: Frame) => f.sourceID === undefined || !src.has(f.sourceID);
const fn = (f: Frame) => `${f.name || "(anonymous)"}${isNative(f) ? " (native)" : ` ${src.get(f.sourceID!)}`}`;

const selfTime = new Map<string, number>();
let total = 0;
let writes = 0;
for (const t of st.traces) {
  const top = t.frames[0];
  if (top === undefined) continue;
  total++;
  if (top.name === "write" && isNative(top)) {
    writes++;
    continue;
  }
  const key = isNative(top) && t.frames[1] ? `${fn(top)} < ${fn(t.frames[1])}` : fn(top);
  selfTime.set(key, (selfTime.get(key) ?? 0) + 1);
}
const rest = total - writes;
const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1).padStart(5)}%`;
console.log(`${total} samples: ${pct(writes, total)} in socket/file writes, ${pct(rest, total)} elsewhere`);
console.log(`\nself time, share of the samples outside writes:`);
for (const [k, v] of [...selfTime].sort((a, b) => b[1] - a[1]).slice(0, Number(opt("--top") ?? 40))) console.log(`${pct(v, rest)}  ${k}`);

for (const name of (opt("--callers") ?? "").split(",").filter(Boolean)) {
  const stacks = new Map<string, number>();
  for (const t of st.traces) {
    const i = t.frames.findIndex((f) => f.name === name);
    if (i < 0) continue;
    const key = t.frames.slice(i, i + 4).map(fn).join(" < ");
    stacks.set(key, (stacks.get(key) ?? 0) + 1);
  }
  console.log(`\nstacks above ${name}, share of all samples:`);
  for (const [k, v] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`${pct(v, total)}  ${k}`);
}
