// Discovery as a plugin kind: loading and config positions, the two source shapes (async iterable
// and subscription), isolation (a throwing or hanging source keeps the last good list), reload,
// and the types `fulcrum types` prints.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pluginFailureCounts } from "../../core/plugins/isolate.ts";
import type { Pool } from "../../core/pool/pool.ts";
import { runCli } from "../helpers/fulcrum.ts";
import { ROOT, startFromFile, tempDir } from "../helpers/plugins.ts";
import { testScope } from "../helpers/scope.ts";
import { until } from "../helpers/dns.ts";
import { ManualClock } from "../helpers/clock.ts";

const { cleanups, backends } = testScope();

async function serveFile(file: string, clock?: ManualClock) {
  const f = await startFromFile(file, clock ? { clock } : {});
  cleanups.push(() => f.stop());
  return f;
}
const pool = (f: { server: { gateway: { pools: ReadonlyMap<string, Pool> } } }) => f.server.gateway.pools.get("web")!;
const urls = (p: Pool) => p.backends.map((b) => b.url).sort();

/** A test-controlled channel a plugin in a temp file reads through `globalThis`. */
interface Channel {
  list: unknown;
  update?: (list: unknown) => void;
  fail?: (e: unknown) => void;
  subscribed: number;
  stopped: number;
}
function channel(name: string, list: unknown): Channel {
  const ch: Channel = { list, subscribed: 0, stopped: 0 };
  (globalThis as Record<string, unknown>)[name] = ch;
  cleanups.push(() => delete (globalThis as Record<string, unknown>)[name]);
  return ch;
}

const SUBSCRIBE = `
import type { DiscoveryPlugin } from "fulcrum";
export default {
  kind: "discovery",
  name: "channel",
  create(o: { channel: string }) {
    const ch = (globalThis as any)[o.channel];
    return {
      subscribe(update, fail) {
        ch.subscribed++;
        ch.update = update;
        ch.fail = fail;
        update(ch.list);
        return () => ch.stopped++;
      },
    };
  },
} satisfies DiscoveryPlugin<{ channel: string }>;
`;

describe("discovery plugins: the two shapes of a source", () => {
  test("a subscription: each list applies; fail() keeps the last list, counts a plugin error and subscribes again", async () => {
    const [a, b] = backends(2);
    const ch = channel("disco1", [{ url: a!.url }]);
    const t = tempDir();
    t.write("channel.ts", SUBSCRIBE);
    const f = await serveFile(
      t.write("f.yaml", `pools:\n  web:\n    discovery: { plugin: ./channel.ts, options: { channel: disco1 } }\n`),
    );
    const p = pool(f);
    expect(urls(p)).toEqual([a!.url]);
    ch.update!([{ url: a!.url }, { url: b!.url, weight: 2, labels: { zone: "b" } }]);
    expect(urls(p)).toEqual([a!.url, b!.url].sort());
    expect(p.backends.find((x) => x.url === b!.url)!.labels).toEqual({ zone: "b" });

    const before = pluginFailureCounts.get("channel") ?? 0;
    ch.fail!(new Error("lost the session"));
    expect(ch.stopped).toBe(1);
    await until(() => pluginFailureCounts.get("channel") === before + 1, "the failure counted");
    expect(urls(p)).toEqual([a!.url, b!.url].sort());
    expect((await fetch(f.url)).status).toBe(200);
    // After the backoff (1s), created and subscribed again.
    ch.list = [{ url: b!.url }];
    await until(() => ch.subscribed === 2, "a second subscription", 5_000);
    expect(urls(p)).toEqual([b!.url]);
  });

  test("an async iterable that throws after its first list: the list stays and serves; it is created again", async () => {
    const [a] = backends(1);
    const t = tempDir();
    t.write(
      "once.ts",
      `let created = 0;
export default { kind: "discovery", name: "once", create(o: { url: string }) {
  created++;
  (globalThis as any).onceCreated = created;
  return (async function* () { yield [{ url: o.url }]; await new Promise((r) => setTimeout(r, 20)); throw new Error("boom " + created); })();
} };`,
    );
    const f = await serveFile(t.write("f.yaml", `pools:\n  web:\n    discovery: { plugin: ./once.ts, options: { url: "${a!.url}" } }\n`));
    cleanups.push(() => delete (globalThis as Record<string, unknown>).onceCreated);
    const p = pool(f);
    expect(urls(p)).toEqual([a!.url]);
    await until(() => (p.discovery!.counts.error ?? 0) >= 1, "the throw counted");
    expect(urls(p)).toEqual([a!.url]);
    expect((await fetch(f.url)).status).toBe(200);
    const failed = f.records.find((r) => r.message.join("") === "plugin failed");
    expect(failed?.properties).toMatchObject({ plugin: "once", what: "discovery failed", error: "boom 1" });
    await until(() => (globalThis as { onceCreated?: number }).onceCreated === 2, "created again after the backoff", 5_000);
  });

  test("a source that hangs after its first list keeps serving that list; invalid entries are skipped, an all-invalid list is not applied", async () => {
    const [a, b] = backends(2);
    const ch = channel("disco2", [{ url: a!.url }, { url: "ftp://x" }, { url: b!.url, weight: -1 }]);
    const t = tempDir();
    t.write("channel.ts", SUBSCRIBE);
    const f = await serveFile(t.write("f.yaml", `pools:\n  web:\n    discovery: { plugin: ./channel.ts, options: { channel: disco2 } }\n`));
    const p = pool(f);
    expect(urls(p)).toEqual([a!.url]);
    const skipped = f.records.find((r) => r.message.join("").includes("entries skipped"));
    expect(String(skipped?.properties.problems)).toContain("[1].url: must be an http:// or https:// URL");
    expect(String(skipped?.properties.problems)).toContain("[2].weight: must be a whole number >= 0");
    ch.update!([{ url: "nope" }]);
    ch.update!("not a list");
    ch.update!([]);
    expect(urls(p)).toEqual([a!.url]);
    expect(p.discovery!.counts).toMatchObject({ invalid: 2, empty: 1 });
    // It never calls again (hangs): the list stays.
    for (let i = 0; i < 5; i++) expect((await fetch(f.url)).status).toBe(200);
  });
});

/** A pool fed by the channel plugin, with `empty_after` and fake time; `rewrite` changes its file for a reload. */
async function channelPool(name: string, list: unknown, emptyAfter: string, clock = new ManualClock()) {
  const ch = channel(name, list);
  const t = tempDir();
  t.write("channel.ts", SUBSCRIBE);
  const yaml = (extra: string) =>
    `pools:\n  web:\n    discovery: { plugin: ./channel.ts, options: { channel: ${name} }, empty_after: ${emptyAfter} }\n${extra}`;
  const f = await serveFile(t.write("f.yaml", yaml("")), clock);
  return { ch, f, p: pool(f), clock, rewrite: (extra: string) => t.write("f.yaml", yaml(extra)) };
}

describe("discovery plugins: empty_after", () => {
  test("empty answers empty the pool only after empty_after of nothing else; a list in between resets the count; the pool then answers 503", async () => {
    const [a, b] = backends(2);
    const { ch, f, p, clock } = await channelPool("disco-empty", [{ url: a!.url }], "30s");
    expect(urls(p)).toEqual([a!.url]);
    ch.update!([]);
    clock.advance(29_000);
    expect(urls(p)).toEqual([a!.url]);
    expect((await fetch(f.url)).status).toBe(200);
    // A list in between: the count starts again from the next empty answer.
    ch.update!([{ url: b!.url }]);
    expect(urls(p)).toEqual([b!.url]);
    ch.update!([]);
    clock.advance(20_000);
    ch.update!([]);
    clock.advance(9_999);
    expect(urls(p)).toEqual([b!.url]);
    clock.advance(1);
    expect(urls(p)).toEqual([]);
    expect(f.logged("discovery for pool {pool}: no backends listed for {seconds}s; the pool is emptied")).toHaveLength(1);
    expect(p.discovery!.counts.applied).toBe(3); // the first list, b's, and the emptying
    expect((await fetch(f.url)).status).toBe(503);
    // Backends come back with the next list.
    ch.update!([{ url: a!.url }]);
    expect(urls(p)).toEqual([a!.url]);
    expect((await fetch(f.url)).status).toBe(200);
  });

  test("a failure stops the count without resetting it: the pool empties at the next empty answer once empty_after has passed", async () => {
    const [a] = backends(1);
    const { ch, f, p, clock } = await channelPool("disco-empty2", [{ url: a!.url }], "10s");
    ch.update!([]);
    ch.update!("not a list");
    clock.advance(60_000);
    expect(urls(p)).toEqual([a!.url]);
    expect(f.logged("discovery for pool {pool}: {why}; the pool is not emptied while the source fails")).toHaveLength(1);
    // Empty since 60 s: the next empty answer empties at once.
    ch.update!([]);
    expect(urls(p)).toEqual([]);
    // Without empty_after an empty answer never empties (the test above of a hanging source).
  });

  test("a reload carries the count on: reloads do not put off emptying the pool", async () => {
    const [a] = backends(1);
    const { ch, f, clock, rewrite } = await channelPool("disco-empty4", [{ url: a!.url }], "30s");
    ch.update!([]);
    clock.advance(25_000);
    // The reloaded source subscribes and gets the channel's list: still empty.
    ch.list = [];
    rewrite("log: { level: info }\n");
    expect((await f.server.reload()).ok).toBe(true);
    expect(urls(pool(f))).toEqual([a!.url]);
    clock.advance(5_000);
    expect(urls(pool(f))).toEqual([]);
  });

  test("a source that ends stops the count and is counted as an error", async () => {
    const [a] = backends(1);
    const t = tempDir();
    t.write(
      "ends.ts",
      `export default { kind: "discovery", name: "ends", create(o: { url: string }) {
  return (async function* () { yield [{ url: o.url }]; yield []; })();
} };`,
    );
    const clock = new ManualClock();
    const f = await serveFile(
      t.write("f.yaml", `pools:\n  web:\n    discovery: { plugin: ./ends.ts, options: { url: "${a!.url}" }, empty_after: 10s }\n`),
      clock,
    );
    const p = pool(f);
    await until(() => p.discovery!.counts.error === 1, "the end counted");
    clock.advance(20_000);
    expect(urls(p)).toEqual([a!.url]);
    expect(pluginFailureCounts.get("ends") ?? 0).toBe(1);
    expect(f.logged("discovery for pool {pool}: {why}; the pool is not emptied while the source fails")).toHaveLength(1);
  });

  test("empty_after: 0 empties at the first empty answer", async () => {
    const [a] = backends(1);
    const { ch, f, p } = await channelPool("disco-empty3", [{ url: a!.url }], "0s");
    expect(urls(p)).toEqual([a!.url]);
    ch.update!([]);
    expect(urls(p)).toEqual([]);
    expect((await fetch(f.url)).status).toBe(503);
  });
});

describe("discovery plugins: reload and operator state", () => {
  test("a reload re-imports the plugin and starts its new source; the members stay until it answers; the old source is stopped", async () => {
    const [a, b] = backends(2);
    const t = tempDir();
    const plugin = (url: string) =>
      `export default { kind: "discovery", name: "fixed", create(_o, api) {
  (globalThis as any).fixedSignals = [...((globalThis as any).fixedSignals ?? []), api.signal];
  return (async function* () { yield [{ url: "${url}" }]; await new Promise((r) => api.signal.addEventListener("abort", r)); })();
} };`;
    t.write("fixed.ts", plugin(a!.url));
    cleanups.push(() => delete (globalThis as Record<string, unknown>).fixedSignals);
    const f = await serveFile(t.write("f.yaml", `pools:\n  web:\n    discovery: { plugin: ./fixed.ts }\n`));
    const before = pool(f);
    const kept = before.backends[0]!;
    expect(urls(before)).toEqual([a!.url]);
    t.write("fixed.ts", plugin(b!.url));
    const r = await f.server.reload();
    expect(r).toMatchObject({ ok: true, problems: [] });
    const after = pool(f);
    expect(after).not.toBe(before);
    await until(() => urls(after).join() === b!.url, "the new source's list");
    const signals = (globalThis as unknown as { fixedSignals: AbortSignal[] }).fixedSignals;
    expect(signals.map((s) => s.aborted)).toEqual([true, false]);
    await until(() => kept.removed, "the old member removed");
    expect(await (await fetch(f.url)).text()).toContain("b");
  });

  test("an operator's drain of a discovered backend holds while the source keeps listing it", async () => {
    const [a, b] = backends(2);
    const ch = channel("disco3", [{ url: a!.url }, { url: b!.url }]);
    const t = tempDir();
    t.write("channel.ts", SUBSCRIBE);
    const f = await serveFile(t.write("f.yaml", `pools:\n  web:\n    discovery: { plugin: ./channel.ts, options: { channel: disco3 } }\n`));
    const p = pool(f);
    p.backends.find((x) => x.url === a!.url)!.draining = true;
    p.refresh();
    ch.update!([{ url: a!.url }, { url: b!.url }]);
    expect(p.available.map((x) => x.url)).toEqual([b!.url]);
  });
});

describe("discovery plugins: problems at start, with the config position", () => {
  const t = tempDir();
  t.write(
    "strict.ts",
    `export default { kind: "discovery", name: "strict", create(o) { throw new TypeError("prefix must be a string, got " + o.prefix); } };`,
  );
  t.write("strategy.ts", `export default { kind: "strategy", name: "s", create: () => ({ pick: (bs) => bs[0] }) };`);
  t.write("not-iterable.ts", `export default { kind: "discovery", name: "flat", create: () => [{ url: "http://127.0.0.1:9" }] };`);
  t.write("no-default.ts", `export const x = 1;`);
  const pool = (plugin: string, options = "") => `pools:\n  web:\n    discovery: { plugin: ${plugin}${options} }\n`;
  const cases: [string, string, string][] = [
    [
      "create() throwing on bad options",
      pool("./strict.ts", ", options: { prefix: 3 }"),
      ":3:16: pools.web.discovery: plugin ./strict.ts: create() failed: prefix must be a string, got 3",
    ],
    [
      "the wrong kind of plugin",
      pool("./strategy.ts"),
      ':3:16: pools.web.discovery: plugin ./strategy.ts: is a strategy plugin ("s"), but a discovery plugin is needed here',
    ],
    [
      "create() returning a plain array",
      pool("./not-iterable.ts"),
      'discovery "flat": create() must return an async iterable of backend lists or { subscribe(update, fail) }, got an array',
    ],
    [
      "the etcd example without endpoints",
      pool(join(ROOT, "plugins/etcd.ts"), ", options: { prefix: /web/ }"),
      "pools.web.discovery: plugin " + join(ROOT, "plugins/etcd.ts") +
      ": create() failed: endpoints must be a list of etcd client URLs like http://127.0.0.1:2379, got undefined",
    ],
    ["no default export", pool("./no-default.ts"), ":3:16: pools.web.discovery: plugin ./no-default.ts: has no default export"],
    [
      "backends and discovery together",
      `pools:\n  web:\n    backends: [http://127.0.0.1:9]\n    discovery: { plugin: ./strict.ts }\n`,
      ":4:16: pools.web.discovery cannot be set together with backends",
    ],
    [
      "neither backends nor discovery",
      `pools:\n  web: { strategy: round-robin }\n`,
      ":2:8: pools.web.backends is required (it must list at least one backend, or the pool sets discovery)",
    ],
    [
      "dns without a port for A records",
      `pools:\n  web:\n    discovery: { dns: { name: api.internal } }\n`,
      ":3:23: pools.web.discovery.dns.port is required (with type A; only SRV records carry a port)",
    ],
    [
      "dns with a resolver that is not an address",
      `pools:\n  web:\n    discovery: { dns: { name: a.internal, type: SRV, resolver: "dns.local:53" } }\n`,
      "pools.web.discovery.dns.resolver must be a DNS server address",
    ],
  ];
  let n = 0;
  for (const [name, yaml, expected] of cases) {
    test(name, async () => {
      const cfg = t.write(`c${++n}.yaml`, yaml);
      const r = await runCli(["run", "--config", cfg]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(expected.startsWith(":") ? `${cfg}${expected}` : expected);
      expect(r.stdout).not.toContain("listening");
    });
  }
});

test("fulcrum types declares the discovery kind: plugins/etcd.ts type-checks against it outside this repository, a wrong source does not", async () => {
  const r = await runCli(["types"]);
  expect(r.code).toBe(0);
  const t = tempDir();
  t.write("fulcrum.d.ts", r.stdout);
  t.write("etcd.ts", readFileSync(join(ROOT, "plugins/etcd.ts"), "utf8"));
  t.write(
    "wrong.ts",
    `import type { DiscoveryPlugin } from "fulcrum";\nexport default { kind: "discovery", name: "w", create: () => [{ url: "http://x" }] } satisfies DiscoveryPlugin;\n`,
  );
  const tsc = (file: string) =>
    Bun.spawn([
      join(ROOT, "node_modules/.bin/tsc"),
      "--noEmit",
      "--strict",
      "--target",
      "es2022",
      "--module",
      "esnext",
      "--moduleResolution",
      "bundler",
      "--lib",
      "es2022,dom,dom.iterable,dom.asynciterable",
      "--types",
      "",
      "fulcrum.d.ts",
      file,
    ], { cwd: t.dir, stdout: "pipe" });
  const ok = tsc("etcd.ts");
  const okOut = new Response(ok.stdout).text();
  expect(await ok.exited, await okOut).toBe(0);
  const bad = tsc("wrong.ts");
  expect(await bad.exited).not.toBe(0);
  expect(await new Response(bad.stdout).text()).toContain("wrong.ts");
  for (const name of ["interface DiscoveryPlugin", "type DiscoverySource", "interface DiscoveryApi", "interface DiscoveredBackend"]) {
    expect(r.stdout).toContain(`  export ${name}`);
  }
  expect(r.stdout).toContain("| DiscoveryPlugin<never>");
});
