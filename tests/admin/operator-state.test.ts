// Operator state (drain and weight set through the admin API): kept by reloads for the backends
// that stay, unless the new config changes that weight; kept across restarts with `state_file`,
// owned by the primary when there are workers. Real processes, real sockets, the admin API.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { InProcess } from "../helpers/fulcrum.ts";
import { spawnRun, tempDir, type ChildFulcrum } from "../helpers/plugins.ts";
import { testScope } from "../helpers/scope.ts";
import type { TestBackend } from "../helpers/backends.ts";
import type { BackendStatus } from "../../core/pool/pool.ts";

setDefaultTimeout(30_000);
const { cleanups, backend, fulcrum } = testScope();

const trio = () => [backend("b1"), backend("b2"), backend("b3")];
/** A weighted pool of `bs` with ids b1…; `weights` by id (default 1); `extra` lines after the pool. */
function config(bs: TestBackend[], o: { weights?: Record<string, number>; extra?: string; pool?: string } = {}): string {
  const list = bs.map((b) => `      - { url: "${b.url}", id: ${b.name}, weight: ${o.weights?.[b.name] ?? 1} }`).join("\n");
  return `pools:\n  web:\n    strategy: weighted-round-robin\n${o.pool ?? ""}    backends:\n${list}\n${o.extra ?? ""}`;
}
const drain = (admin: string, id: string) => fetch(`${admin}/backends/web/${id}/drain`, { method: "POST" });
const weigh = (admin: string, id: string, weight: number) =>
  fetch(`${admin}/backends/web/${id}/weight`, { method: "PUT", body: JSON.stringify({ weight }) });
async function backendsOf(admin: string): Promise<Record<string, BackendStatus>> {
  const body = (await (await fetch(`${admin}/backends`)).json()) as { pools: { web: { backends: BackendStatus[] } } };
  return Object.fromEntries(body.pools.web.backends.map((b) => [b.id, b]));
}
/** Which backend answered each of `n` requests, counted (fresh connections: with workers, all of them serve). */
async function hits(url: string, n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await fetch(url, { headers: { connection: "close" } });
    await r.text();
    const name = r.headers.get("x-backend") ?? `status ${r.status}`;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}
const state = (f: InProcess | { adminUrl: string }) => backendsOf(f.adminUrl!);

describe("a reload keeps the operator's drain and weight for the backends that stay", () => {
  test("in one process: through an unrelated change and a rebuilt backend; a new configured weight wins", async () => {
    const bs = trio();
    let yaml = config(bs);
    const f = await fulcrum(yaml, { reload: () => yaml });
    expect((await weigh(f.adminUrl!, "b1", 5)).status).toBe(200);
    expect((await drain(f.adminUrl!, "b2")).status).toBe(200);

    // An unrelated change (a route), then one that rebuilds every backend (keepalive settings).
    yaml = config(bs, { extra: "routes:\n  - { match: { path: / }, pool: web }\n" });
    expect((await f.server.reload()).ok).toBe(true);
    yaml = config(bs, { pool: "    keepalive: { max_idle: 8 }\n" });
    const before = f.server.gateway.pools.get("web")!.backends[0];
    expect((await f.server.reload()).ok).toBe(true);
    expect(f.server.gateway.pools.get("web")!.backends[0]).not.toBe(before); // new objects, same state
    let s = await state(f);
    expect([s.b1!.weight, s.b2!.draining, s.b3!.weight]).toEqual([5, true, 1]);
    expect(await hits(f.url, 12)).toEqual({ b1: 10, b3: 2 });

    // The config now sets b1's weight itself: the config wins; b2 stays drained.
    yaml = config(bs, { weights: { b1: 2 }, pool: "    keepalive: { max_idle: 8 }\n" });
    expect((await f.server.reload()).ok).toBe(true);
    s = await state(f);
    expect([s.b1!.weight, s.b2!.draining]).toEqual([2, true]);
    expect(f.records.some((r) => String(r.rawMessage).includes("replaces the weight {operator} set through the admin API"))).toBe(true);
    expect(await hits(f.url, 6)).toEqual({ b1: 4, b3: 2 });

    // Enabled again, b2 stays enabled across the next reload.
    await fetch(`${f.adminUrl}/backends/web/b2/enable`, { method: "POST" });
    expect((await f.server.reload()).ok).toBe(true);
    expect((await state(f)).b2!.draining).toBe(false);
  });
});

interface Child extends ChildFulcrum {
  readonly adminUrl: string;
}

/** `bun main.ts run --config FILE` with the admin API on a free loopback port. */
async function run(file: string): Promise<Child> {
  const child = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
  cleanups.push(async () => {
    child.proc.kill("SIGKILL");
    await child.closed;
  });
  return { ...child, adminUrl: JSON.parse(await child.waitFor('"message":"admin API listening"')).url as string };
}
const head = (workers: number, extra = "") =>
  `listen: 127.0.0.1:0\nworkers: ${workers}\nadmin: { listen: 127.0.0.1:0 }\nlog: { access_log: false }\n${extra}`;

for (const workers of [1, 2]) {
  describe(`workers: ${workers}`, () => {
    test("a file-watch reload keeps the drain and the weight", async () => {
      const bs = trio();
      const dir = tempDir("fulcrum-state-");
      const file = dir.write("fulcrum.yaml", head(workers, "plugins: { watch: true }\n") + config(bs));
      const c = await run(file);
      await weigh(c.adminUrl, "b1", 5);
      await drain(c.adminUrl, "b2");
      const from = c.lines.length;
      dir.write("fulcrum.yaml", head(workers, "plugins: { watch: true }\n") + config(bs, { pool: "    panic: false\n" }));
      await c.waitFor('"message":"reloaded"', from);
      const s = await state(c);
      expect([s.b1!.weight, s.b2!.draining]).toEqual([5, true]);
      const counts = await hits(c.url, 24);
      expect(counts.b2).toBeUndefined();
      // Per worker the rotation is exact; across workers only the sum of 5:1 turns is.
      expect(counts.b1! + counts.b3!).toBe(24);
      expect(counts.b1!).toBeGreaterThan(counts.b3! * 2);
    });

    test("state_file: drain and weight survive a restart; the file is replaced whole, never left half-written", async () => {
      const bs = trio();
      const dir = tempDir("fulcrum-state-");
      const file = dir.write("fulcrum.yaml", head(workers, "state_file: run/state.json\n") + config(bs));
      dir.write("run/.keep", "");
      const first = await run(file);
      await weigh(first.adminUrl, "b1", 4);
      await drain(first.adminUrl, "b2");
      const saved = JSON.parse(readFileSync(join(dir.dir, "run/state.json"), "utf8"));
      expect(saved).toEqual({ version: 1, pools: { web: { b1: { weight: 4, config_weight: 1 }, b2: { draining: true } } } });
      expect(readdirSync(join(dir.dir, "run")).sort()).toEqual([".keep", "state.json"]); // no temp file left
      first.proc.kill("SIGTERM");
      expect(await first.exited).toBe(0);

      const second = await run(file);
      const restored = JSON.parse(await second.waitFor("operator state restored"));
      expect(restored).toMatchObject({ drained: ["web/b2"], weights: ["web/b1=4"], ignored: [] });
      const s = await state(second);
      expect([s.b1!.weight, s.b2!.draining, s.b3!.draining]).toEqual([4, true, false]);
      const counts = await hits(second.url, 20);
      expect(counts.b2).toBeUndefined();
      expect(counts.b1! + counts.b3!).toBe(20);
    });
  });
}

describe("state_file across restarts (one process)", () => {
  test("backends gone from the config are ignored; a weight whose configured value changed gives way to the config", async () => {
    const bs = trio();
    const dir = tempDir("fulcrum-state-");
    const file = dir.write("fulcrum.yaml", head(1, "state_file: state.json\n") + config(bs));
    const first = await run(file);
    await weigh(first.adminUrl, "b1", 4);
    await weigh(first.adminUrl, "b2", 7);
    await drain(first.adminUrl, "b3");
    first.proc.kill("SIGTERM");
    expect(await first.exited).toBe(0);

    // b3 is gone, b1's configured weight changed from 1 to 2, b2's did not.
    dir.write("fulcrum.yaml", head(1, "state_file: state.json\n") + config([bs[0]!, bs[1]!], { weights: { b1: 2 } }));
    const second = await run(file);
    expect(JSON.parse(await second.waitFor("operator state restored"))).toMatchObject({
      drained: [],
      weights: ["web/b2=7"],
      ignored: ["web/b3"],
    });
    expect(await second.waitFor("replaces the weight")).toContain('"backend":"b1"');
    const s = await state(second);
    expect([s.b1!.weight, s.b2!.weight]).toEqual([2, 7]);
  });

  test("weight 0 either way round: a soft drain set through the admin API, and a configured 0 raised, both survive a restart", async () => {
    const bs = trio();
    const dir = tempDir("fulcrum-state-");
    const file = dir.write("fulcrum.yaml", head(1, "state_file: state.json\n") + config(bs, { weights: { b3: 0 } }));
    const first = await run(file);
    expect((await weigh(first.adminUrl, "b1", 0)).status).toBe(200);
    expect((await weigh(first.adminUrl, "b3", 2)).status).toBe(200);
    expect(JSON.parse(readFileSync(join(dir.dir, "state.json"), "utf8"))).toEqual({
      version: 1,
      pools: { web: { b1: { weight: 0, config_weight: 1 }, b3: { weight: 2, config_weight: 0 } } },
    });
    first.proc.kill("SIGTERM");
    expect(await first.exited).toBe(0);

    const second = await run(file);
    expect(JSON.parse(await second.waitFor("operator state restored"))).toMatchObject({ weights: ["web/b1=0", "web/b3=2"], ignored: [] });
    const s = await state(second);
    expect([s.b1!.weight, s.b1!.available, s.b3!.weight]).toEqual([0, false, 2]);
    expect(await hits(second.url, 6)).toEqual({ b2: 2, b3: 4 });
  });

  test("a corrupt state file is logged and ignored: Fulcrum starts, and the next change writes a good one", async () => {
    const bs = trio();
    const dir = tempDir("fulcrum-state-");
    dir.write("state.json", '{"version": 1, "pools": {"web": {"b1": {"weight": "heavy"');
    const file = dir.write("fulcrum.yaml", head(1, "state_file: state.json\n") + config(bs));
    const c = await run(file);
    const warning = JSON.parse(await c.waitFor("state file"));
    expect(warning.level).toBe("WARN");
    expect(warning.message).toContain("ignored");
    expect(Object.values(await state(c)).map((b) => [b.weight, b.draining])).toEqual([[1, false], [1, false], [1, false]]);
    await drain(c.adminUrl, "b1");
    expect(JSON.parse(readFileSync(join(dir.dir, "state.json"), "utf8"))).toEqual({
      version: 1,
      pools: { web: { b1: { draining: true } } },
    });
  });

  test("a reload that adds state_file starts writing it; one that removes a backend drops its entry", async () => {
    const bs = trio();
    const dir = tempDir("fulcrum-state-");
    const file = dir.write("fulcrum.yaml", head(1) + config(bs));
    const c = await run(file);
    await drain(c.adminUrl, "b3");
    await drain(c.adminUrl, "b2");
    expect(existsSync(join(dir.dir, "state.json"))).toBe(false);
    dir.write("fulcrum.yaml", head(1, "state_file: state.json\n") + config([bs[0]!, bs[1]!]));
    expect((await fetch(`${c.adminUrl}/reload`, { method: "POST" })).status).toBe(200);
    expect(JSON.parse(readFileSync(join(dir.dir, "state.json"), "utf8"))).toEqual({
      version: 1,
      pools: { web: { b2: { draining: true } } },
    });
  });
});
