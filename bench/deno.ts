/**
 * Fulcrum under Deno against nginx, and what Deno itself allows: GET 100 B at 64 connections
 * (wrk), through
 *   - nginx (`worker_processes auto`),
 *   - Fulcrum under Deno, one process, the bench config (access log to a file, admin and metrics on),
 *     run as `deno task start` runs it,
 *   - a bare Deno proxy (`Deno.serve` + `fetch`, nothing else): the most Deno allows with its own HTTP,
 *   - optionally Fulcrum under Bun, one process, for reference (`--with-bun`).
 * Three nginx backends serve the bytes. Rounds alternate the order; the table shows medians.
 *   bun bench/deno.ts [--runs 3] [--duration 5] [--with-bun] [--env FULCRUM_X=1]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackends } from "./lib/backends.ts";
import { stopAll, which, workDir } from "./lib/proc.ts";
import { repoRoot } from "./lib/proxies.ts";
import { nginxProxyServer, sideBySide, type SideServer } from "./lib/side-by-side.ts";
import { nginxVersion } from "./lib/vs-nginx.ts";

const argv = process.argv.slice(2);
const opt = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1]! : d);
const runs = Number(opt("--runs", "3"));
const duration = Number(opt("--duration", "5"));
const env: Record<string, string> = {};
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--env") {
    const [k, v] = argv[i + 1]!.split("=");
    env[k!] = v ?? "";
  }
}
if (!which("wrk") || !which("nginx")) throw new Error("bench/deno.ts needs wrk and nginx");
const dir = workDir("fulcrum-deno-");
const deno = join(repoRoot(), "node_modules", ".bin", "deno");

try {
  const backends = await startBackends({ count: 3, basePort: 19351, dir: join(dir, "backends"), kind: "nginx" });
  const servers: SideServer[] = [];
  const NGINX = 18901, DENO = 18902, BARE = 18903, BUN = 18904;
  servers.push(nginxProxyServer(dir, NGINX, backends.urls));
  const fulcrumYaml = (port: number) => {
    const file = join(dir, `fulcrum-${port}.yaml`);
    writeFileSync(
      file,
      `listen: 127.0.0.1:${port}\nworkers: 1\nadmin: { listen: 127.0.0.1:${port + 50} }\n` +
        `pools:\n  bench: { backends: [${backends.urls.map((u) => `"${u}"`).join(", ")}] }\n` +
        `log: { level: warning, access_log: true, access_log_file: ${join(dir, `access-${port}.log`)} }\n`,
    );
    return file;
  };
  // The command of `deno task start` (deno.json).
  servers.push({
    name: "fulcrum-deno",
    port: DENO,
    env,
    cmd: [
      deno,
      "run",
      "--config",
      join(repoRoot(), "deno.json"),
      "--allow-read",
      "--allow-write",
      "--allow-net",
      "--allow-env",
      "--allow-sys=hostname",
      "--unstable-no-legacy-abort",
      join(repoRoot(), "main.ts"),
      "run",
      "--config",
      fulcrumYaml(DENO),
    ],
  });
  const bare = join(dir, "bare-deno.ts");
  writeFileSync(
    bare,
    `const b = ${JSON.stringify(backends.urls)}; let i = 0;
Deno.serve({ hostname: "127.0.0.1", port: ${BARE}, onListen() {} }, (r) => { const u = new URL(r.url); return fetch(b[i++ % b.length] + u.pathname + u.search, { headers: r.headers }); });
`,
  );
  servers.push({ name: "bare-deno", port: BARE, cmd: [deno, "run", "-A", bare] });
  if (argv.includes("--with-bun")) {
    servers.push({
      name: "fulcrum-bun",
      port: BUN,
      cmd: [process.execPath, join(repoRoot(), "main.ts"), "run", "--config", fulcrumYaml(BUN)],
    });
  }

  const lines = await sideBySide(servers, { dir, runs, duration });
  console.log(`${nginxVersion()}${Object.keys(env).length ? `, Fulcrum with ${JSON.stringify(env)}` : ""}`);
  for (const l of lines) console.log(l);
} finally {
  await stopAll();
}
