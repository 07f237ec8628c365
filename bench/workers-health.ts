// What the primary's health broadcasting costs and changes (README "Multi-core"):
//   bun bench/workers-health.ts [--workers 2] [--rounds 5]
// Two backends; the second fails its health checks at a chosen moment while 8 client loops send
// requests on fresh connections (so they spread over the workers). Reports, per round, the time
// from the primary's flip to the last request any worker still sent to the failed backend, and
// the health probes the backends received per second (one prober, whatever the worker count).
// Everything on 127.0.0.1; every process started is stopped by its pid.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stop, track, workDir } from "./lib/proc.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const workers = arg("--workers", 2);
const rounds = arg("--rounds", 5);
const INTERVAL_MS = 200;

let healthy = true;
const hits: number[] = [];
let probes = 0;
const a = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: (req) => {
    if (new URL(req.url).pathname === "/healthz") probes++;
    return new Response("a");
  },
});
const b = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: (req) => {
    if (new URL(req.url).pathname === "/healthz") {
      probes++;
      return new Response(null, { status: healthy ? 200 : 503 });
    }
    hits.push(Date.now());
    return new Response("b");
  },
});

const dir = workDir("fulcrum-workers-health-"); // removed at exit, or on Ctrl-C once Fulcrum is stopped
const file = join(dir, "fulcrum.yaml");
writeFileSync(
  file,
  `listen: 127.0.0.1:0\nworkers: ${workers}\nadmin: false\nlog: { access_log: false }\npools:\n  web:\n` +
    `    backends: ["http://127.0.0.1:${a.port}", "http://127.0.0.1:${b.port}"]\n` +
    `    health: { path: /healthz, interval: ${INTERVAL_MS}ms, jitter: 0ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1 }\n`,
);
const proc = Bun.spawn([process.execPath, "main.ts", "run", "--config", file], {
  cwd: join(import.meta.dir, ".."),
  stdout: "pipe",
  stderr: "inherit",
});
track("fulcrum", proc);
const lines: string[] = [];
const waiters: { needle: string; from: number; resolve: (l: string) => void }[] = [];
void (async () => {
  let buf = "";
  for await (const chunk of proc.stdout) {
    buf += new TextDecoder().decode(chunk);
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      for (const w of waiters.splice(0)) {
        const hit = lines.slice(w.from).find((l) => l.includes(w.needle));
        if (hit) w.resolve(hit);
        else waiters.push(w);
      }
    }
  }
})();
const waitFor = (needle: string, from = 0) =>
  new Promise<string>((resolve) => {
    const hit = lines.slice(from).find((l) => l.includes(needle));
    if (hit) resolve(hit);
    else waiters.push({ needle, from, resolve });
  });

try {
  const url = JSON.parse(await waitFor('"message":"listening"')).url as string;
  let running = true;
  const load = Array.from({ length: 8 }, async () => {
    while (running) await fetch(url, { headers: { connection: "close" } }).then((r) => r.arrayBuffer(), () => undefined);
  });
  const lags: number[] = [];
  for (let r = 0; r < rounds; r++) {
    await Bun.sleep(500); // steady traffic to both backends
    const from = lines.length;
    healthy = false;
    const flip = Date.parse(JSON.parse(await waitFor('"state":"unhealthy"', from))["@timestamp"]);
    await Bun.sleep(1000);
    const last = hits.filter((t) => t >= flip - 1000).at(-1) ?? flip;
    lags.push(Math.max(0, last - flip));
    const back = lines.length;
    healthy = true;
    await waitFor('"state":"healthy"', back);
  }
  const p0 = probes;
  const t0 = performance.now();
  await Bun.sleep(3000);
  const perSec = ((probes - p0) * 1000) / (performance.now() - t0);
  running = false;
  await Promise.all(load);
  console.log(`workers: ${workers}, health interval ${INTERVAL_MS} ms, 2 backends`);
  console.log(`flip → last request to the failed backend (ms, per round): ${lags.join(", ")}`);
  console.log(`health probes received: ${perSec.toFixed(1)}/s for 2 backends (one prober: ${(2000 / INTERVAL_MS).toFixed(1)}/s expected)`);
} finally {
  await stop(proc);
  a.stop(true);
  b.stop(true);
}
