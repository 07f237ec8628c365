/**
 * Records the order in which a compiled Fulcrum runs its functions, for compile.sh's second pass
 * (`bun build --compile --bytecode --bytecode-order FILE`): the bytecode of what start-up and the
 * first requests run is then laid out together at the front of the executable, so fewer of its
 * pages are read in (measured: ~3 MiB less RSS for one process, start-up unchanged).
 *   bun bench/bytecode-order.ts BINARY ORDER_FILE
 * Runs BINARY with a one-pool config in front of a local backend on 127.0.0.1 (ports chosen by the
 * kernel), proxies a few requests through it, stops it with SIGTERM (the order file is written at
 * exit) and exits 0 if ORDER_FILE was written. Everything it starts is stopped by its PID.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [binary, orderFile] = process.argv.slice(2);
if (!binary || !orderFile) {
  process.stderr.write("usage: bun bench/bytecode-order.ts BINARY ORDER_FILE\n");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "fulcrum-order-"));
const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
const config = join(dir, "fulcrum.yaml");
// What a default start runs: admin and metrics on, an access log; one process.
writeFileSync(
  config,
  `listen: 127.0.0.1:0\nworkers: 1\nadmin: { listen: 127.0.0.1:0 }\n` +
    `pools:\n  web: { backends: ["http://127.0.0.1:${backend.port}"] }\n` +
    `log: { level: info, access_log: true, access_log_file: ${join(dir, "access.log")} }\n`,
);
rmSync(orderFile, { force: true });
const proc = Bun.spawn([binary, "run", "--config", config], {
  env: { ...process.env, BUN_BYTECODE_ORDER_OUT: orderFile },
  stdin: "ignore",
  stdout: "pipe",
  stderr: "inherit",
});
let ok = false;
try {
  // The "listening" log line (JSON on stdout) gives the proxy's URL.
  const url = await new Promise<string | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 20_000);
    let seen: string | undefined = "";
    void (async () => {
      // Read to the end: a closed pipe would fail the proxy's later log writes.
      for await (const chunk of proc.stdout) {
        if (seen === undefined) continue;
        seen += new TextDecoder().decode(chunk);
        const m = /"message":"listening"[^\n]*"url":"([^"]+)"/.exec(seen);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
          seen = undefined;
        }
      }
      resolve(undefined);
    })();
  });
  if (url) {
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${url}/`);
      await r.text();
      ok = r.status === 200;
    }
  }
} finally {
  proc.kill("SIGTERM");
  await proc.exited;
  backend.stop(true);
  rmSync(dir, { recursive: true, force: true });
}
if (!ok || !existsSync(orderFile)) {
  process.stderr.write(`bytecode-order: no order recorded (proxied: ${ok}, file written: ${existsSync(orderFile)})\n`);
  process.exit(1);
}
