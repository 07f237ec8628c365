// A reload applies `log`: the level at once, and a new access-log file, format or field list to the
// requests of the new config, in one process and with workers. The old file gets every line of
// the requests before the reload and none after; a path that cannot be opened rejects the reload.
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackend } from "../helpers/backends.ts";
import { spawnRun, tempDir } from "../helpers/plugins.ts";

setDefaultTimeout(60_000);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

// A user middleware that writes a debug record per request: seen only at level debug.
const DEBUG_PLUGIN = `
import type { MiddlewarePlugin } from "fulcrum";
export default {
  kind: "middleware",
  name: "debug-each",
  create(_o, api) {
    return async (c, next) => {
      api.log.debug("saw {path}", { path: new URL(c.req.url).pathname });
      await next();
    };
  },
} satisfies MiddlewarePlugin;
`;

/** The lines of `file` once it has `n` (the writers batch for up to 50 ms). */
async function lines(file: string, n: number): Promise<string[]> {
  const until = Date.now() + 10_000;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, "utf8") : "";
    const got = text.split("\n").filter(Boolean);
    if (got.length >= n || Date.now() > until) return got;
    await Bun.sleep(10);
  }
}

for (const workers of [1, 2]) {
  describe(`workers: ${workers}`, () => {
    test("a reload switches the access log's file and format and the level; the old file keeps the earlier lines only", async () => {
      // /slow/… answers once the test opens the gate: a request in flight across the reload.
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const backend = startBackend("b", async (req, name) => {
        if (new URL(req.url).pathname.startsWith("/slow/")) await gate;
        return new Response(`hello from ${name}\n`);
      });
      cleanups.push(() => backend.stop());
      const dir = tempDir("fulcrum-logreload-");
      dir.write("debug-each.ts", DEBUG_PLUGIN);
      const a = join(dir.dir, "a.log");
      const b = join(dir.dir, "b.log");
      const config = (log: string) =>
        `listen: 127.0.0.1:0\nworkers: ${workers}\npools:\n  web:\n    backends: ["${backend.url}"]\n` +
        `routes:\n  - match: { path: / }\n    pool: web\n    middleware:\n      - plugin: ./debug-each.ts\n` +
        `log: ${log}\n`;
      const file = dir.write("fulcrum.yaml", config(`{ level: info, access_log_file: ${a} }`));
      const child = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
      cleanups.push(async () => {
        child.proc.kill("SIGKILL");
        await child.closed;
      });
      for (let from = 0, seen = 0; seen < (workers > 1 ? workers : 0); seen++) {
        from = child.lines.indexOf(await child.waitFor('"message":"worker listening"', from)) + 1;
      }
      for (let i = 0; i < 4; i++) expect((await fetch(`${child.url}/before/${i}`, { headers: { connection: "close" } })).status).toBe(200);
      expect((await lines(a, 4)).map((l) => JSON.parse(l).path).sort()).toEqual(["/before/0", "/before/1", "/before/2", "/before/3"]);
      expect(child.lines.some((l) => l.includes('"message":"saw '))).toBe(false);

      // A path that cannot be opened: rejected, and the running log settings keep working.
      writeFileSync(file, config(`{ level: debug, access_log_file: ${join(dir.dir, "missing", "x.log")} }`));
      let from = child.lines.length;
      child.proc.kill("SIGHUP");
      await child.waitFor('"message":"reload rejected', from);

      const slow = fetch(`${child.url}/slow/1`, { headers: { connection: "close" } });
      while (!backend.requests.some((r) => r.path === "/slow/1")) await Bun.sleep(5);
      writeFileSync(file, config(`{ level: debug, access_log_file: ${b}, access_format: combined }`));
      from = child.lines.length;
      child.proc.kill("SIGHUP");
      await child.waitFor('"message":"reloaded"', from);
      open();
      expect((await slow).status).toBe(200);
      for (let i = 0; i < 4; i++) expect((await fetch(`${child.url}/after/${i}`, { headers: { connection: "close" } })).status).toBe(200);
      const after = await lines(b, 4);
      expect(after).toHaveLength(4);
      for (const l of after) expect(l).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/after\/\d HTTP\/1\.1" 200 \d+ "-" "[^"]*"$/);
      // Debug records from the plugin now, on stdout.
      await child.waitFor('"message":"saw \\"/after/', from);
      // The old file: the lines of the requests of the old config, the one in flight included,
      // and nothing since.
      const old = await lines(a, 5);
      expect(old.map((l) => JSON.parse(l).path).sort()).toEqual(["/before/0", "/before/1", "/before/2", "/before/3", "/slow/1"]);
    });
  });
}
