// Backends from DNS: a real DNS server on a loopback UDP port (tests/helpers/dns.ts) whose records
// change while traffic flows through a real Fulcrum to real backends on 127.0.0.x.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { testScope } from "../helpers/scope.ts";
import { type AddressedBackend, startAddressedBackend, startDnsServer, steadyLoad, until } from "../helpers/dns.ts";
import type { Pool } from "../../core/pool/pool.ts";
import { spawnListening } from "../helpers/fulcrum.ts";
import { ROOT, tempDir } from "../helpers/plugins.ts";

const scope = testScope();

async function dnsServer() {
  const dns = await startDnsServer();
  scope.cleanups.push(() => dns.stop());
  return dns;
}

function backendAt(name: string, address: string, port = 0): AddressedBackend {
  const b = startAddressedBackend(name, address, port);
  scope.cleanups.push(() => b.stop());
  return b;
}

const pool = (f: { server: { gateway: { pools: ReadonlyMap<string, Pool> } } }) => f.server.gateway.pools.get("web")!;
const ids = (p: Pool) => p.backends.map((b) => b.id).sort();

describe("discovery: dns A records", () => {
  test("records added and removed while 2,000 requests flow at concurrency 20: no request fails, the new backend gets traffic only after its health check passes, the removed one none after its drain", async () => {
    const dns = await dnsServer();
    const a = backendAt("a", "127.0.0.2");
    const b = backendAt("b", "127.0.0.3", a.port);
    b.healthy = false;
    dns.set("api.test", "A", [{ address: "127.0.0.2", ttl: 1 }]);
    const f = await scope.fulcrum(`
pools:
  web:
    discovery:
      dns: { name: api.test, type: A, port: ${a.port}, interval: 100ms, resolver: "${dns.address}" }
    health: { path: /health, interval: 100ms, timeout: 2s, healthy_threshold: 1, unhealthy_threshold: 3 }
    retry: { attempts: 1 }
log: { level: info, access_log: false }
`);
    expect(ids(pool(f))).toEqual([`127.0.0.2:${a.port}`]);
    const load = steadyLoad(f.url, { concurrency: 20, min: 2_000 });
    await until(() => a.served > 100, "traffic on a");

    // A new address joins: probed (failing) and kept out of rotation until /health passes.
    dns.set("api.test", "A", [{ address: "127.0.0.2", ttl: 1 }, { address: "127.0.0.3", ttl: 1 }]);
    await until(() => b.probes.length >= 2, "b probed twice while failing");
    expect(b.served).toBe(0);
    expect(pool(f).backends.find((x) => x.id === `127.0.0.3:${a.port}`)!.isAvailable()).toBe(false);
    b.healthy = true;
    await until(() => b.served > 50, "traffic on b once healthy");
    expect(b.probes.indexOf(true)).toBeGreaterThanOrEqual(2);

    // An address leaves: no new requests, those in flight finish, then its count stays.
    const leaving = pool(f).backends.find((x) => x.id === `127.0.0.2:${a.port}`)!;
    dns.set("api.test", "A", [{ address: "127.0.0.3", ttl: 1 }]);
    await until(() => !pool(f).backends.includes(leaving), "a removed from the pool");
    await until(() => leaving.inflight === 0 && a.inflight === 0, "a drained");
    const afterDrain = a.served;
    const sentAtDrain = load.sent;
    await until(() => load.results.length >= sentAtDrain + 200, "200 more requests after the drain");
    const { results, failures } = await load.stop();

    if (failures.length)
      console.log(f.records.filter((r) => r.level !== "debug").map((r) => r.message.join("") + JSON.stringify(r.properties)).join("\n"));
    expect(failures).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(2_000);
    expect(a.served).toBe(afterDrain);
    expect(results.slice(-100).every((r) => r.backend === "b")).toBe(true);
    expect(leaving.removed).toBe(true);
    expect(ids(pool(f))).toEqual([`127.0.0.3:${a.port}`]);
  });

  test("a removed backend finishes the request in flight to it, then its connections close", async () => {
    const dns = await dnsServer();
    const a = backendAt("a", "127.0.0.2");
    const b = backendAt("b", "127.0.0.3", a.port);
    dns.set("api.test", "A", [{ address: "127.0.0.2" }]);
    const f = await scope.fulcrum(`
pools:
  web:
    discovery: { dns: { name: api.test, port: ${a.port}, interval: 100ms, resolver: "${dns.address}" } }
log: { level: error, access_log: false }
`);
    let open!: () => void;
    a.gate = new Promise<void>((r) => (open = r));
    const slow = fetch(`${f.url}/slow`);
    await until(() => a.inflight === 1, "the slow request at a");
    const leaving = pool(f).backends[0]!;
    // Count when its upstream connections are closed.
    let destroyed = 0;
    const agent = leaving.agent as { destroy(): void };
    const destroy = agent.destroy.bind(agent);
    agent.destroy = () => (destroyed++, destroy());
    dns.set("api.test", "A", [{ address: "127.0.0.3" }]);
    await until(() => ids(pool(f)).join() === `127.0.0.3:${a.port}`, "a replaced by b");
    expect(leaving.removed).toBe(true);
    expect(leaving.inflight).toBe(1);
    expect(destroyed).toBe(0);
    expect(await (await fetch(f.url)).text()).toBe("hello from b\n");
    open();
    const r = await slow;
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("hello from a\n");
    await until(() => leaving.inflight === 0 && destroyed === 1, "a released and closed");
    expect(b.served).toBe(1);
  });

  test("an empty answer and a failing server keep the last good set, logged and counted", async () => {
    const dns = await dnsServer();
    const a = backendAt("a", "127.0.0.2");
    dns.set("api.test", "A", [{ address: "127.0.0.2", ttl: 1 }]);
    const f = await scope.fulcrum(`
pools:
  web:
    discovery: { dns: { name: api.test, port: ${a.port}, interval: 100ms, resolver: "${dns.address}" } }
admin: { metrics: true }
log: { level: info, access_log: false }
`);
    expect(ids(pool(f))).toEqual([`127.0.0.2:${a.port}`]);
    const counts = pool(f).discovery!.counts;

    dns.set("api.test", "A", []);
    const before = dns.queries.get("api.test/A")!;
    await until(() => (counts.empty ?? 0) >= 2, "two empty answers");
    expect(dns.queries.get("api.test/A")!).toBeGreaterThan(before);
    expect(ids(pool(f))).toEqual([`127.0.0.2:${a.port}`]);
    expect((await fetch(f.url)).status).toBe(200);

    dns.fail("api.test", true);
    await until(() => (counts.error ?? 0) >= 1, "a failed lookup");
    expect(ids(pool(f))).toEqual([`127.0.0.2:${a.port}`]);
    expect((await fetch(f.url)).status).toBe(200);
    // Logged once when the last good set starts being kept, not at every repeat.
    const kept = f.records.filter((r) => String(r.message.join("")).includes("keeping the last good list"));
    expect(kept.length).toBe(1);
    expect(JSON.stringify(kept[0]!.properties)).toContain("an empty list");

    const metrics = await (await fetch(`${f.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/fulcrum_discovery_updates_total\{pool="web",result="empty"\} [1-9]/);
    expect(metrics).toMatch(/fulcrum_discovery_updates_total\{pool="web",result="error"\} [1-9]/);

    // It answers again: the new set applies, and that is logged.
    dns.fail("api.test", false);
    const c = backendAt("c", "127.0.0.4", a.port);
    dns.set("api.test", "A", [{ address: "127.0.0.4", ttl: 1 }]);
    await until(() => ids(pool(f)).join() === `127.0.0.4:${a.port}`, "the new set", 15_000);
    expect(await (await fetch(f.url)).text()).toBe("hello from c\n");
    expect(c.served).toBe(1);
    expect(f.records.some((r) => r.message.join("").includes("works again"))).toBe(true);
  });

  test("with empty_after, a name that keeps answering with no records empties the pool (503), and its records coming back refill it", async () => {
    const dns = await dnsServer();
    const a = backendAt("a", "127.0.0.2");
    dns.set("gone.test", "A", [{ address: "127.0.0.2", ttl: 1 }]);
    const f = await scope.fulcrum(`
pools:
  web:
    discovery: { dns: { name: gone.test, port: ${a.port}, interval: 100ms, resolver: "${dns.address}" }, empty_after: 500ms }
log: { level: info, access_log: false }
`);
    expect(ids(pool(f))).toEqual([`127.0.0.2:${a.port}`]);
    const counts = pool(f).discovery!.counts;
    dns.set("gone.test", "A", []);
    await until(() => ids(pool(f)).length === 0, "the pool emptied", 10_000);
    // Several empty answers came before it emptied: one alone does not.
    expect(counts.empty).toBeGreaterThanOrEqual(2);
    expect((await fetch(f.url)).status).toBe(503);
    dns.set("gone.test", "A", [{ address: "127.0.0.2", ttl: 1 }]);
    await until(() => ids(pool(f)).length === 1, "the pool refilled", 10_000);
    expect((await fetch(f.url)).status).toBe(200);
  });

  test("without interval, the records' TTL sets how often the name is asked (at least 1s)", async () => {
    const dns = await dnsServer();
    const a = backendAt("a", "127.0.0.2");
    dns.set("ttl.test", "A", [{ address: "127.0.0.2", ttl: 1 }]);
    const f = await scope.fulcrum(`
pools:
  web:
    discovery: { dns: { name: ttl.test, port: ${a.port}, resolver: "${dns.address}" } }
log: { level: error, access_log: false }
`);
    expect(ids(pool(f))).toEqual([`127.0.0.2:${a.port}`]);
    const started = Date.now();
    await until(() => dns.queries.get("ttl.test/A")! >= 3, "two more lookups", 5_000);
    // Two TTLs of 1s passed between the first lookup and the third.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_500);
  });
});

describe("discovery: dns SRV and AAAA records", () => {
  test("SRV gives each backend its port and weight; only the lowest priority is used; targets resolve through the same server", async () => {
    const dns = await dnsServer();
    const light = backendAt("light", "127.0.0.1");
    const heavy = backendAt("heavy", "127.0.0.1");
    const backup = backendAt("backup", "127.0.0.1");
    dns.set("one.test", "A", [{ address: "127.0.0.1" }]);
    dns.set("_http._tcp.api.test", "SRV", [
      { priority: 10, weight: 1, port: light.port, target: "one.test" },
      { priority: 10, weight: 3, port: heavy.port, target: "127.0.0.1" },
      { priority: 20, weight: 5, port: backup.port, target: "one.test" },
    ]);
    const f = await scope.fulcrum(`
pools:
  web:
    strategy: weighted-round-robin
    discovery: { dns: { name: _http._tcp.api.test, type: SRV, resolver: "${dns.address}" } }
log: { level: error, access_log: false }
`);
    const p = pool(f);
    expect(p.backends.map((b) => [b.url, b.weight]).sort()).toEqual(
      [[light.url, 1], [heavy.url, 3]].sort() as [string, number][],
    );
    for (let i = 0; i < 40; i++) await (await fetch(f.url)).text();
    expect([light.served, heavy.served, backup.served]).toEqual([10, 30, 0]);
  });

  test("AAAA records become IPv6 backends", async () => {
    const dns = await dnsServer();
    const six = backendAt("six", "::1");
    dns.set("v6.test", "AAAA", [{ address: "::1" }]);
    const f = await scope.fulcrum(`
pools:
  web:
    discovery: { dns: { name: v6.test, type: AAAA, port: ${six.port}, resolver: "${dns.address}" } }
log: { level: error, access_log: false }
`);
    expect(pool(f).backends.map((b) => b.url)).toEqual([`http://[::1]:${six.port}`]);
    expect(await (await fetch(f.url)).text()).toBe("hello from six\n");
  });
});

describe("discovery: operator state across a restart", () => {
  for (const workers of [1, 2]) {
    test(`workers: ${workers}: a drain and a weight of discovered backends in state_file hold after a restart; a new weight is saved`, async () => {
      const dns = await dnsServer();
      const a = backendAt("a", "127.0.0.2");
      const b = backendAt("b", "127.0.0.3", a.port);
      dns.set("api.test", "A", [{ address: "127.0.0.2" }, { address: "127.0.0.3" }]);
      const t = tempDir();
      const [idA, idB] = [`127.0.0.2:${a.port}`, `127.0.0.3:${a.port}`];
      // A records give each backend weight 1: the saved weight 3 was set over it.
      t.write(
        "state.json",
        JSON.stringify({ version: 1, pools: { web: { [idA]: { draining: true }, [idB]: { weight: 3, config_weight: 1 } } } }),
      );
      const cfg = t.write(
        "f.yaml",
        `listen: 127.0.0.1:0
workers: ${workers}
admin: { listen: 127.0.0.1:0 }
state_file: state.json
pools:
  web:
    discovery: { dns: { name: api.test, port: ${a.port}, interval: 1s, resolver: "${dns.address}" } }
log: { level: info, access_log: false }
`,
      );
      const child = await spawnListening([process.execPath, "main.ts", "run", "--config", cfg], { cwd: ROOT }, 30_000);
      scope.cleanups.push(() => (child.kill("SIGTERM"), child.exited));
      const admin = JSON.parse(child.lines.find((l) => l.includes('"admin API listening"'))!).url as string;
      const view = (await (await fetch(`${admin}/backends`)).json()) as {
        pools: { web: { backends: { id: string; draining: boolean; available: boolean; weight: number }[] } };
      };
      expect(view.pools.web.backends.map((x) => [x.id, x.draining, x.available, x.weight]).sort()).toEqual([
        [idA, true, false, 1],
        [idB, false, true, 3],
      ]);
      for (let i = 0; i < 6; i++) expect(await (await fetch(child.url)).text()).toBe("hello from b\n");
      expect(a.served).toBe(0);
      expect(b.served).toBe(6);
      // An admin weight on a discovered backend is saved against the source's weight.
      const put = await fetch(`${admin}/backends/web/${encodeURIComponent(idB)}/weight`, {
        method: "PUT",
        body: JSON.stringify({ weight: 5 }),
      });
      expect(put.status).toBe(200);
      expect(JSON.parse(readFileSync(join(t.dir, "state.json"), "utf8")).pools.web[idB]).toEqual({ weight: 5, config_weight: 1 });
    });
  }
});
