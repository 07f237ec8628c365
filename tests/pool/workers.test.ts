// Stickiness and consistent hashing across worker processes (`workers: 2`): a cookie set by one
// worker, or a key hashed by one, goes to the same backend when the other worker answers.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { startBackends } from "../helpers/backends.ts";
import { spawnRun, tempDir, type ChildFulcrum } from "../helpers/plugins.ts";

// A primary and two workers start: more than the default 5 s when run alone.
setDefaultTimeout(30_000);

const backends = startBackends(4);
let cluster: ChildFulcrum | undefined;
afterAll(async () => {
  if (cluster) {
    cluster.proc.kill("SIGKILL");
    await cluster.exited;
  }
  for (const b of backends) await b.stop();
});

async function start(): Promise<ChildFulcrum> {
  const list = backends.map((b) => b.url).join(", ");
  const file = tempDir("fulcrum-sticky-workers-").write(
    "fulcrum.yaml",
    `listen: 127.0.0.1:0
workers: 2
admin: false
log: { access_log: true }
pools:
  web: { strategy: round-robin, sticky: true, backends: [${list}] }
  carts: { strategy: { name: consistent-hash, options: { key: "header:x-user" } }, backends: [${list}] }
routes:
  - { match: { path: /carts }, pool: carts }
  - { match: { path: / }, pool: web }
`,
  );
  const c = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
  for (let from = 0, n = 0; n < 2; n++) from = c.lines.indexOf(await c.waitFor('"message":"worker listening"', from)) + 1;
  return c;
}

/** One request on a fresh connection, so the kernel may hand it to either worker. */
async function fresh(url: string, headers: Record<string, string> = {}) {
  const r = await fetch(url, { headers: { connection: "close", ...headers } });
  await r.arrayBuffer();
  expect(r.status).toBe(200);
  return { backend: r.headers.get("x-backend"), cookie: /^fulcrum_be=([^;]*)/.exec(r.headers.get("set-cookie") ?? "")?.[1] };
}

/** Which worker answered each access record from line `from` on, once `count` were written. */
async function workersOf(c: ChildFulcrum, count: number, from: number): Promise<number[]> {
  const out: number[] = [];
  for (let at = from; out.length < count;) {
    const line = await c.waitFor('"message":"access"', at);
    at = c.lines.indexOf(line, at) + 1;
    out.push((JSON.parse(line) as { worker: number }).worker);
  }
  return out;
}

describe("workers: 2", () => {
  test("a cookie from one worker and a key hashed by one keep their backend on the other", async () => {
    cluster = await start();
    const c = cluster;
    let from = c.lines.length;
    const given: { cookie: string; backend: string | null }[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await fresh(c.url);
      given.push({ cookie: r.cookie!, backend: r.backend });
    }
    const firstRound = await workersOf(c, 20, from);
    from = c.lines.length;
    for (const g of given) {
      for (let k = 0; k < 2; k++) expect((await fresh(c.url, { cookie: `fulcrum_be=${g.cookie}` })).backend).toBe(g.backend);
    }
    const secondRound = await workersOf(c, 40, from);
    // Both workers set cookies and both honoured them.
    expect(new Set(firstRound)).toEqual(new Set([1, 2]));
    expect(new Set(secondRound)).toEqual(new Set([1, 2]));

    for (let u = 0; u < 10; u++) {
      const seen = new Set<string | null>();
      for (let k = 0; k < 6; k++) seen.add((await fresh(`${c.url}/carts`, { "x-user": `user-${u}` })).backend);
      expect(seen.size).toBe(1);
    }
  });
});
