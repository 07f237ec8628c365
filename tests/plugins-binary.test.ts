// The compiled binary loads plugins from an empty folder: no node_modules, no Bun, no repository.
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startBackends } from "./helpers/backends.ts";
import { ROOT, spawnRun, tempDir } from "./helpers/plugins.ts";

const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test("bun build --compile: the binary runs a strategy and a middleware plugin from an empty folder, and reloads them", async () => {
  const out = tempDir("fulcrum-bin-");
  const bin = join(out.dir, "fulcrum");
  const build = Bun.spawn([process.execPath, "build", "--compile", "main.ts", "--outfile", bin], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect(await build.exited).toBe(0);

  const [a, b] = startBackends(2);
  cleanups.push(() => a!.stop(), () => b!.stop());
  const site = tempDir("fulcrum-site-");
  site.write("lib/choice.ts", "export const choice = 0;\n");
  site.write("chooser.ts", `import type { StrategyPlugin } from "fulcrum";\nimport { choice } from "./lib/choice.ts";\n` +
    `export default { kind: "strategy", name: "chooser", create: () => ({ pick: (bs) => bs[choice] }) } satisfies StrategyPlugin;\n`);
  site.write("stamp.ts", `import { Hono, version, type MiddlewarePlugin } from "fulcrum";\n` +
    `export default { kind: "middleware", name: "stamp", create: () => async (c, next) => { await next(); c.header("x-stamp", version + (typeof Hono)); } } satisfies MiddlewarePlugin;\n`);
  site.write("fulcrum.yaml", `listen: 127.0.0.1:0\npools:\n  web: { strategy: { plugin: ./chooser.ts }, backends: ["${a!.url}", "${b!.url}"] }\n` +
    `routes:\n  - { pool: web, middleware: [ { plugin: ./stamp.ts }, { rate-limit: { rate: 1000/s } } ] }\n`);

  const child = await spawnRun(["env", "-i", bin, "run", "--config", "fulcrum.yaml"], site.dir);
  cleanups.push(() => child.stop());
  const r = await fetch(child.url);
  expect(r.headers.get("x-backend")).toBe("b1");
  expect(r.headers.get("x-stamp")).toMatch(/^\d+\.\d+\.\d+function$/);
  expect(r.headers.get("ratelimit-policy")).toBe('"default";q=1000;w=1');

  site.write("lib/choice.ts", "export const choice = 1;\n");
  const from = child.lines.length;
  child.proc.kill("SIGHUP");
  await child.waitFor('"message":"reloaded"', from);
  expect((await fetch(child.url)).headers.get("x-backend")).toBe("b2");

  const types = Bun.spawn(["env", "-i", bin, "types"], { cwd: site.dir, stdout: "pipe" });
  expect(await new Response(types.stdout).text()).toContain("export interface StrategyPlugin");
});
