// The example discovery plugin (plugins/etcd.ts) against a real etcd server on loopback, started
// and stopped by these tests: keys put and deleted while traffic flows, etcd going away.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Etcd, startEtcd } from "../helpers/etcd.ts";
import { type AddressedBackend, startAddressedBackend, steadyLoad, until } from "../helpers/dns.ts";
import { testScope } from "../helpers/scope.ts";
import type { Pool } from "../../core/pool/pool.ts";

const PLUGIN = new URL("../../plugins/etcd.ts", import.meta.url).pathname;
const scope = testScope();
let etcd: Etcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(() => etcd?.stop());

function backend(name: string): AddressedBackend {
  const b = startAddressedBackend(name, "127.0.0.1");
  scope.cleanups.push(() => b.stop());
  return b;
}
const pool = (f: { server: { gateway: { pools: ReadonlyMap<string, Pool> } } }) => f.server.gateway.pools.get("web")!;
const urls = (p: Pool) => p.backends.map((b) => b.url).sort();
const config = (prefix: string, extra = "") => `
pools:
  web:
    strategy: weighted-round-robin
    discovery:
      plugin: ${PLUGIN}
      options: { endpoints: ["${etcd.url}"], prefix: ${prefix} }
    retry: { attempts: 1 }${extra}
log: { level: info, access_log: false }
`;

describe("discovery plugin: etcd", () => {
  test("keys put and deleted while requests flow: the new backend gets traffic, the deleted one none after its drain, no request fails", async () => {
    const [a, b, c] = [backend("a"), backend("b"), backend("c")];
    await etcd.put("/flow/web/a", a.url);
    await etcd.put("/flow/web/b", `${b.url} weight=2`);
    await etcd.put("/other/x", "http://127.0.0.1:9"); // outside the prefix
    const f = await scope.fulcrum(config("/flow/web/"));
    const p = pool(f);
    expect(urls(p)).toEqual([a.url, b.url].sort());
    expect(p.backends.find((x) => x.url === b.url)!.weight).toBe(2);

    const load = steadyLoad(f.url, { concurrency: 20, min: 2_000 });
    await until(() => a.served > 50 && b.served > 50, "traffic on a and b");
    await etcd.put("/flow/web/c", JSON.stringify({ url: c.url, weight: 3 }));
    await until(() => c.served > 50, "traffic on c");
    expect(p.backends.find((x) => x.url === c.url)!.weight).toBe(3);

    const leaving = p.backends.find((x) => x.url === a.url)!;
    await etcd.del("/flow/web/a");
    await until(() => !p.backends.includes(leaving), "a removed");
    // Drained as the proxy counts it (a request picked before the removal may not have reached a yet), then at a.
    await until(() => leaving.inflight === 0 && a.inflight === 0, "a drained");
    const afterDrain = a.served;
    const sentAtDrain = load.sent;
    await until(() => load.results.length >= sentAtDrain + 200, "200 more requests");
    const { results, failures } = await load.stop();

    expect(failures).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(2_000);
    expect(a.served).toBe(afterDrain);
    expect(new Set(results.slice(-100).map((r) => r.backend))).toEqual(new Set(["b", "c"]));
    expect(urls(p)).toEqual([b.url, c.url].sort());
  });

  test("a value that is not a backend URL is skipped and logged; the other keys serve", async () => {
    const a = backend("a");
    await etcd.put("/bad/web/a", a.url);
    await etcd.put("/bad/web/typo", "htp://nowhere");
    const f = await scope.fulcrum(config("/bad/web/"));
    expect(urls(pool(f))).toEqual([a.url]);
    expect(f.records.some((r) => r.message.join("").includes("/bad/web/typo skipped"))).toBe(true);
    expect(await (await fetch(f.url)).text()).toBe("hello from a\n");
  });
});

describe("discovery plugin: etcd going away", () => {
  test("etcd stopped: the last list keeps serving, the failure is logged and counted; a new etcd on the same address is read again", async () => {
    // An etcd of this test's own, so stopping it leaves the others' alone.
    const own = await startEtcd();
    scope.cleanups.push(() => own.stop());
    const [a, b] = [backend("a"), backend("b")];
    await own.put("/svc/web/a", a.url);
    await own.put("/svc/web/b", b.url);
    const f = await scope.fulcrum(`
pools:
  web:
    discovery:
      plugin: ${PLUGIN}
      options: { endpoints: ["${own.url}"], prefix: /svc/web/ }
log: { level: info, access_log: false }
`);
    const p = pool(f);
    expect(urls(p)).toEqual([a.url, b.url].sort());
    const counts = p.discovery!.counts;
    const errors = counts.error ?? 0;

    await own.halt();
    await until(() => (counts.error ?? 0) > errors, "the watch failure counted");
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await fetch(f.url);
      expect(r.status).toBe(200);
      seen.add((await r.text()).trim());
    }
    expect(seen).toEqual(new Set(["hello from a", "hello from b"]));
    expect(urls(p)).toEqual([a.url, b.url].sort());
    const warning = f.records.find((r) => r.message.join("").includes("keeping the last good list"));
    expect(JSON.stringify(warning?.properties)).toContain("etcd");

    // Back, with a key added meanwhile (written once it is up): the plugin is created again and reads it.
    await own.resume();
    const c = backend("c");
    await own.put("/svc/web/c", c.url);
    await until(() => urls(p).includes(c.url), "c discovered after etcd came back", 20_000);
    expect(urls(p)).toEqual([a.url, b.url, c.url].sort());
    expect(f.records.some((r) => r.message.join("").includes("works again"))).toBe(true);
  });
});
