// Several instances, one view: three `fulcrum run` processes (one of them with two workers)
// watch one etcd prefix through the example plugin, under load on all three, while keys change.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type Etcd, startEtcd } from "../helpers/etcd.ts";
import { type AddressedBackend, startAddressedBackend, steadyLoad, until } from "../helpers/dns.ts";
import { ROOT, tempDir } from "../helpers/plugins.ts";
import { type Child, spawnListening } from "../helpers/fulcrum.ts";

let etcd: Etcd;
const backends: AddressedBackend[] = [];
const instances: Child[] = [];
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await Promise.all(instances.map((i) => (i.kill("SIGTERM"), i.exited)));
  await Promise.all(backends.map((b) => b.stop()));
  await etcd?.stop();
});

interface BackendsView {
  pools: { web: { backends: { id: string; url: string; available: boolean; workers?: { available?: boolean }[] }[] } };
}
// Logged before "listening", so it is there once the instance listens.
const adminUrl = (i: Child) => JSON.parse(i.lines.find((l) => l.includes('"admin API listening"'))!).url as string;
const view = async (admin: string) => (await (await fetch(`${admin}/backends`)).json()) as BackendsView;
/** The backends an instance may pick: available in it (and, with workers, in every worker). */
const available = async (admin: string) =>
  (await view(admin)).pools.web.backends.filter((b) => b.available && (b.workers ?? []).every((w) => w.available)).map((b) => b.url)
    .sort();

test("three instances sharing one etcd behave as one balancer: under load on all three, each follows the keys put and deleted", async () => {
  const [a, b, c] = ["a", "b", "c"].map((n) => startAddressedBackend(n, "127.0.0.1"));
  backends.push(a!, b!, c!);
  await etcd.put("/fleet/web/a", a!.url);
  await etcd.put("/fleet/web/b", b!.url);
  const t = tempDir();
  const config = (workers: number) =>
    t.write(
      `fulcrum-${workers}.yaml`,
      `listen: 127.0.0.1:0
workers: ${workers}
admin: { listen: 127.0.0.1:0 }
pools:
  web:
    discovery:
      plugin: ${ROOT}plugins/etcd.ts
      options: { endpoints: ["${etcd.url}"], prefix: /fleet/web/ }
    health: { path: /health, interval: 200ms, healthy_threshold: 1 }
log: { level: info, access_log: false }
`,
    );
  // A primary with two workers starts three processes: allow for a busy machine.
  const started = await Promise.all(
    [2, 1, 1].map((w) =>
      spawnListening([process.execPath, "main.ts", "run", "--config", config(w)], { cwd: ROOT }, 30_000).then((c) => (instances.push(c), c))
    ),
  );
  const admins = started.map(adminUrl);
  for (const admin of admins) expect(await available(admin)).toEqual([a!.url, b!.url].sort());

  const loads = started.map((i) => steadyLoad(i.url, { concurrency: 5, min: 400 }));
  await until(() => loads.every((l) => l.results.length > 50), "traffic through every instance");

  await etcd.put("/fleet/web/c", c!.url);
  // Each instance health-checks c, then sends it traffic.
  await until(async () => (await Promise.all(admins.map(available))).every((u) => u.includes(c!.url)), "c available everywhere");
  const sentAtC = loads.map((l) => l.results.length);
  await until(() => loads.every((l, i) => l.results.slice(sentAtC[i]).some((r) => r.backend === "c")), "c served through every instance");

  await etcd.del("/fleet/web/a");
  await until(
    async () => (await Promise.all(admins.map(view))).every((v) => !v.pools.web.backends.some((x) => x.url === a!.url)),
    "a gone everywhere",
  );
  await until(() => a!.inflight === 0, "a drained");
  const afterDrain = a!.served;
  const sentAtDrain = loads.map((l) => l.results.length);
  await until(() => loads.every((l, i) => l.results.length >= sentAtDrain[i]! + 100), "100 more requests through every instance");
  const done = await Promise.all(loads.map((l) => l.stop()));

  for (const d of done) expect(d.failures).toEqual([]);
  expect(a!.served).toBe(afterDrain);
  // One view: every instance has the same members, and used them.
  const views = await Promise.all(admins.map(available));
  for (const v of views) expect(v).toEqual([b!.url, c!.url].sort());
  for (const d of done) expect(new Set(d.results.slice(-40).map((r) => r.backend))).toEqual(new Set(["b", "c"]));
  // The first instance's two workers follow its primary's discovery: each may pick c.
  const cInFirst = (await view(admins[0]!)).pools.web.backends.find((x) => x.url === c!.url)!;
  expect(cInFirst.workers?.map((w) => w.available)).toEqual([true, true]);
  expect(done.reduce((n, d) => n + d.results.length, 0)).toBeGreaterThanOrEqual(1_200);
});
