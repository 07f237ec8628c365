// The Redis store under Deno: `deno task start` with a config that declares one loads ioredis
// (npm: through node_modules) and enforces a limit shared with a Bun instance on the same Redis.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { type Child, spawnFulcrum, spawnListening } from "../helpers/fulcrum.ts";
import { ROOT, tempDir } from "../helpers/plugins.ts";
import { startRedis, type TestRedis } from "../helpers/redis.ts";

const DENO = join(ROOT, "node_modules", ".bin", "deno");
let redis: TestRedis;
let backend: TestBackend;
const children: Child[] = [];
beforeAll(async () => {
  redis = await startRedis();
  backend = startBackend("b1");
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await redis?.stop();
  await backend?.stop();
});

test("a Deno and a Bun instance share one bucket: 10 of 40 requests across both at 1/min, burst 10", async () => {
  const site = tempDir("fulcrum-deno-redis-");
  site.write(
    "fulcrum.yaml",
    `listen: 127.0.0.1:0
workers: 1
admin: false
log: { level: info, access_log: false }
stores:
  shared: { redis: "${redis.url}", prefix: "deno${Date.now()}:" }
pools:
  web: { backends: [{ url: ${backend.url} }] }
routes:
  - match: { path: / }
    pool: web
    middleware:
      - rate-limit: { rate: 1/m, burst: 10, store: shared }
`,
  );
  const { INIT_CWD: _, ...env } = process.env;
  const deno = await spawnListening([DENO, "task", "--config", join(ROOT, "deno.json"), "start", "run", "--config", "fulcrum.yaml"], {
    cwd: site.dir,
    env: { ...env, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` } as Record<string, string>,
  }, 30_000);
  children.push(deno);
  expect(deno.lines.some((l) => l.includes('"runtime":"deno"'))).toBe(true);
  const bun = await spawnFulcrum(["run", "--config", join(site.dir, "fulcrum.yaml")], 20_000);
  children.push(bun);
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) {
    for (const url of [deno.url, bun.url]) {
      const r = await fetch(`${url}/x`);
      await r.arrayBuffer();
      statuses.push(r.status);
    }
  }
  expect(statuses.filter((s) => s === 200).length).toBe(10);
  expect(statuses.filter((s) => s === 429).length).toBe(30);
  for (const c of [deno, bun]) c.kill("SIGTERM");
  expect(await deno.exited).toBe(0);
  expect(await bun.exited).toBe(0);
}, 60_000);
