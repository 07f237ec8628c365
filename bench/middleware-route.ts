/**
 * What a route with middleware costs: Fulcrum (one process, access log and metrics on) with the
 * route `/` straight to the pool, and with the built-in rate limit on it at a limit never
 * reached, beside nginx; GET 100 B at 64 connections (wrk), three nginx backends.
 *   bun bench/middleware-route.ts [--runs 3] [--duration 5] [--runtime deno]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackends } from "./lib/backends.ts";
import { stopAll, which, workDir } from "./lib/proc.ts";
import { repoRoot } from "./lib/proxies.ts";
import { nginxProxyServer, sideBySide } from "./lib/side-by-side.ts";
import { nginxVersion } from "./lib/vs-nginx.ts";

const argv = process.argv.slice(2);
const opt = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1]! : d);
const runs = Number(opt("--runs", "3"));
const duration = Number(opt("--duration", "5"));
const runtime = opt("--runtime", "bun");
if (!which("wrk") || !which("nginx")) throw new Error("bench/middleware-route.ts needs wrk and nginx");
const dir = workDir("fulcrum-mw-route-");

try {
  const backends = await startBackends({ count: 3, basePort: 19371, dir: join(dir, "backends"), kind: "nginx" });
  const NGINX = 18921, PLAIN = 18922, LIMITED = 18923;
  const fulcrum = (name: string, port: number, middleware: string) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      `listen: 127.0.0.1:${port}\nworkers: 1\nadmin: { listen: 127.0.0.1:${port + 50} }\n` +
        `pools:\n  bench: { backends: [${backends.urls.map((u) => `"${u}"`).join(", ")}] }\n` +
        `routes:\n  - match: { path: / }\n    pool: bench\n${middleware}` +
        `log: { level: warning, access_log: true, access_log_file: ${join(dir, `${name}-access.log`)} }\n`,
    );
    const cmd = runtime === "deno"
      ? [join(repoRoot(), "node_modules", ".bin", "deno"), "run", "-A", "--unstable-no-legacy-abort", join(repoRoot(), "main.ts")]
      : [process.execPath, join(repoRoot(), "main.ts")];
    return { name, port, cmd: [...cmd, "run", "--config", file] };
  };
  const lines = await sideBySide([
    nginxProxyServer(dir, NGINX, backends.urls),
    fulcrum("fulcrum", PLAIN, ""),
    fulcrum("fulcrum-ratelimit", LIMITED, `    middleware:\n      - rate-limit: { rate: 10000000/s }\n`),
  ], { dir, runs, duration });
  console.log(`${nginxVersion()}; Fulcrum on ${runtime}, one process`);
  for (const l of lines) console.log(l);
} finally {
  await stopAll();
}
