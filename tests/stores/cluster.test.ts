// A store named by a Cluster URL: each bucket's key is routed to the node owning its slot, and
// the script (one key) runs there.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import { run } from "../helpers/tls.ts";
import { startCluster, type TestCluster } from "../helpers/redis.ts";

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await startCluster();
}, 30_000);
afterAll(async () => {
  await cluster?.stop();
});
const scope = testScope();

test("redis+cluster://: ten clients each get their burst of 2, their buckets spread over the three nodes", async () => {
  const b = scope.backend("b1");
  // A fixed prefix (the cluster is new for this file): the ten keys' slots are the same every run.
  const prefix = "cl:";
  const f = await scope.fulcrum(`
stores:
  cl: { redis: "${cluster.url}", prefix: "${prefix}", timeout: 1s }
pools:
  web: { backends: [{ url: ${b.url} }] }
routes:
  - match: { path: / }
    pool: web
    middleware:
      - rate-limit: { rate: 1/m, burst: 2, key: "header:x-user", store: cl }
`);
  for (let user = 0; user < 10; user++) {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(`${f.url}/x`, { headers: { "x-user": `u${user}` } })).status);
    expect(statuses).toEqual([200, 200, 429]);
  }
  // Every node holds some of the ten buckets.
  const perNode = await Promise.all(
    cluster.ports.map(async (p) => (await run(["redis-cli", "-h", "127.0.0.1", "-p", String(p), "DBSIZE"])).stdout.trim()),
  );
  expect(perNode.map(Number).reduce((a, n) => a + n, 0)).toBe(10);
  expect(perNode.every((n) => Number(n) > 0)).toBe(true);
}, 30_000);
