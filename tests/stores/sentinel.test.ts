// A store named by a Sentinel URL: Fulcrum asks the Sentinel for the master and limits through it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import { startRedis, startSentinel, type TestRedis, type TestSentinel } from "../helpers/redis.ts";

let redis: TestRedis;
let sentinel: TestSentinel;
beforeAll(async () => {
  redis = await startRedis();
  sentinel = await startSentinel(redis);
});
afterAll(async () => {
  await sentinel?.stop();
  await redis?.stop();
});
const scope = testScope();

test("redis+sentinel://…/mymaster/0: the limit holds and its bucket is in the master", async () => {
  const b = scope.backend("b1");
  const prefix = `s${Date.now()}:`;
  const f = await scope.fulcrum(`
stores:
  ha: { redis: "${sentinel.url}", prefix: "${prefix}", timeout: 1s }
pools:
  web: { backends: [{ url: ${b.url} }] }
routes:
  - match: { path: / }
    pool: web
    middleware:
      - rate-limit: { rate: 1/m, burst: 3, store: ha }
`);
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) statuses.push((await fetch(`${f.url}/x`)).status);
  expect(statuses).toEqual([200, 200, 200, 429, 429]);
  expect(await redis.cli("KEYS", `${prefix}*`)).toContain(`${prefix}rl:default:1/m:3:client-ip:`);
});
