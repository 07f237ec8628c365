// `workers: 2`: a primary and two worker processes sharing the port, driven as an operator
// would: requests, signals to the primary's pid, the admin API. Every process is stopped by pid.
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { startBackend, startBackends, closedPort, type TestBackend } from "../helpers/backends.ts";
import { runCli, watchLines } from "../helpers/fulcrum.ts";
import { spawnRun, tempDir, type ChildFulcrum } from "../helpers/plugins.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";
import { parseConfig } from "../../core/config/load.ts";

// Each test starts three processes (a primary, two workers): more than the default 5 s when run alone.
setDefaultTimeout(30_000);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

interface Cluster extends ChildFulcrum {
  readonly adminUrl: string;
  /** Worker number → pid, from the workers' "worker listening" lines. */
  readonly workers: Map<number, number>;
  readonly dir: ReturnType<typeof tempDir>;
}

const BASE = "listen: 127.0.0.1:0\nworkers: 2\nadmin: { listen: 127.0.0.1:0 }\n";

async function startCluster(yaml: string, register = cleanups, dir = tempDir("fulcrum-workers-")): Promise<Cluster> {
  const file = dir.write("fulcrum.yaml", BASE + yaml);
  const child = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
  register.push(async () => {
    child.proc.kill("SIGKILL");
    await child.closed;
  });
  const admin = await child.waitFor('"message":"admin API listening"');
  const workers = new Map<number, number>();
  for (let from = 0; workers.size < 2;) {
    const line = await child.waitFor('"message":"worker listening"', from);
    from = child.lines.indexOf(line) + 1;
    const w = JSON.parse(line) as { worker: number; pid: number };
    workers.set(w.worker, w.pid);
  }
  return { ...child, adminUrl: JSON.parse(admin).url as string, workers, dir };
}

/** `n` requests on fresh connections (so the kernel spreads them over the workers); statuses and backends. */
async function burst(url: string, n = 40, path = "/") {
  const out: { status: number; backend: string | null }[] = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(url + path, { headers: { connection: "close" } });
    await r.arrayBuffer();
    out.push({ status: r.status, backend: r.headers.get("x-backend") });
  }
  return out;
}

/** The access-log records from line `from` on, once `count` of them have been written. */
async function accessRecords(c: ChildFulcrum, count: number, from = 0): Promise<{ worker: number; backend: string; status: number }[]> {
  const out = [];
  for (let at = from; out.length < count;) {
    const line = await c.waitFor('"message":"access"', at);
    at = c.lines.indexOf(line, at) + 1;
    out.push(JSON.parse(line));
  }
  return out;
}

const workersIn = (records: { worker: number }[]) => [...new Set(records.map((r) => r.worker))].sort();
const parentOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
/** Running (a zombie, exited but not yet reaped by its new parent, does not count). */
const alive = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]![0] !== "Z";
  } catch {
    return false;
  }
};

describe("workers: 2 (one cluster for the read-only checks)", () => {
  let c: Cluster;
  let backends: TestBackend[];
  const shared: (() => unknown)[] = [];
  beforeAll(async () => {
    backends = startBackends(2);
    shared.push(() => Promise.all(backends.map((b) => b.stop())));
    c = await startCluster(`pools:\n  web: { backends: ["${backends[0]!.url}", "${backends[1]!.url}"] }\n`, shared, dir);
  });
  afterAll(async () => {
    while (shared.length) await shared.pop()!();
  });
  // Made after the afterAll above, so that it is removed after the cluster stops (afterAll hooks
  // run in order), and not in beforeAll: one made there is removed when the hook ends.
  const dir = tempDir("fulcrum-workers-");

  test("two worker processes, children of the primary, serve the port; the access log names the worker", async () => {
    const pids = [...c.workers.values()];
    expect(new Set(pids).size).toBe(2);
    for (const pid of pids) {
      expect(pid).not.toBe(c.pid);
      expect(parentOf(pid)).toBe(c.pid);
    }
    const from = c.lines.length;
    const results = await burst(c.url);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(workersIn(await accessRecords(c, 40, from))).toEqual([1, 2]);
  });

  test("/metrics on the primary counts the requests every worker served", async () => {
    const before = parsePrometheus(await (await fetch(`${c.adminUrl}/metrics`)).text());
    const total = (m: typeof before) => (m.get("fulcrum_requests_total")?.samples ?? []).reduce((n, s) => n + s.value, 0);
    const from = c.lines.length;
    await burst(c.url, 30);
    expect(workersIn(await accessRecords(c, 30, from))).toEqual([1, 2]);
    const after = parsePrometheus(await (await fetch(`${c.adminUrl}/metrics`)).text());
    expect(total(after) - total(before)).toBe(30);
    expect(after.get("fulcrum_workers")!.samples[0]!.value).toBe(2);
    // Shared state is not multiplied by the number of workers.
    for (const s of after.get("fulcrum_backend_up")!.samples) expect(s.value).toBe(1);
    for (const s of after.get("fulcrum_backend_weight")!.samples) expect(s.value).toBe(1);
    const closed = after.get("fulcrum_backend_circuit_state")!.samples.filter((s) => s.labels.state === "closed");
    for (const s of closed) expect(s.value).toBe(2); // two workers, each closed
  });

  test("/backends on the primary shows each worker's own view of each backend", async () => {
    const body = (await (await fetch(`${c.adminUrl}/backends`)).json()) as {
      pools: { web: { backends: { id: string; available: boolean; workers: { worker: number; pid: number; circuit: string }[] }[] } };
    };
    for (const b of body.pools.web.backends) {
      expect(b.available).toBe(true);
      expect(b.workers.map((w) => [w.worker, w.pid]).sort()).toEqual([...c.workers.entries()].sort());
      expect(b.workers.every((w) => w.circuit === "closed")).toBe(true);
    }
  });

  test("an admin drain on the primary stops traffic to that backend from every worker; enable brings it back", async () => {
    const id = `127.0.0.1:${backends[1]!.port}`;
    expect((await fetch(`${c.adminUrl}/backends/web/${id}/drain`, { method: "POST" })).status).toBe(200);
    // The admin API answers once every worker has applied the drain.
    const seen = backends[1]!.requests.length;
    const from = c.lines.length;
    const results = await burst(c.url);
    const records = await accessRecords(c, 40, from);
    expect(workersIn(records)).toEqual([1, 2]);
    expect(results.every((r) => r.status === 200 && r.backend === "b1")).toBe(true);
    expect(backends[1]!.requests.length).toBe(seen);

    expect((await fetch(`${c.adminUrl}/backends/web/${id}/enable`, { method: "POST" })).status).toBe(200);
    const again = await burst(c.url, 20);
    expect(again.some((r) => r.backend === "b2")).toBe(true);
  });
});

describe("workers: 2 supervision", () => {
  test("a worker killed with SIGKILL is restarted; no request fails once it is back", async () => {
    const [a] = startBackends(1);
    cleanups.push(() => a!.stop());
    const c = await startCluster(`pools:\n  web: { backends: ["${a!.url}"] }\n`);
    const victim = c.workers.get(1)!;
    const from = c.lines.length;
    process.kill(victim, "SIGKILL");
    // Right at the kill, a connection the dead worker had accepted may fail: retry those (bounded).
    for (let i = 0; i < 20; i++) {
      let ok = false;
      for (let tries = 0; tries < 3 && !ok; tries++) {
        ok = await fetch(c.url, { headers: { connection: "close" } }).then((r) => r.status === 200, () => false);
      }
      expect(ok).toBe(true);
    }
    const restarted = JSON.parse(await c.waitFor('"message":"worker 1 restarted"', from)) as { pid: number };
    expect(restarted.pid).not.toBe(victim);
    expect(c.lines.slice(from).some((l) => l.includes("killed by SIGKILL"))).toBe(true);
    const after = c.lines.length;
    const results = await burst(c.url);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(workersIn(await accessRecords(c, 40, after))).toEqual([1, 2]);
  });

  test("SIGHUP: the primary validates, then every worker follows the new config; a broken one changes nothing", async () => {
    const [a, b] = startBackends(2);
    cleanups.push(() => a!.stop(), () => b!.stop());
    const c = await startCluster(`pools:\n  web: { backends: ["${a!.url}"] }\n`);
    expect((await burst(c.url, 10)).every((r) => r.backend === "b1")).toBe(true);

    c.dir.write("fulcrum.yaml", `${BASE}pools:\n  web: { backends: ["${b!.url}"] }\n`);
    let from = c.lines.length;
    c.proc.kill("SIGHUP");
    await c.waitFor('"message":"reloaded"', from);
    // One "reloaded" line, from the primary, once every worker has switched.
    from = c.lines.length;
    const results = await burst(c.url);
    expect(results.every((r) => r.status === 200 && r.backend === "b2")).toBe(true);
    expect(workersIn(await accessRecords(c, 40, from))).toEqual([1, 2]);

    c.dir.write("fulcrum.yaml", `${BASE}pools:\n  web: { backends: [{ url: "${a!.url}", weight: -3 }] }\n`);
    from = c.lines.length;
    c.proc.kill("SIGHUP");
    expect(await c.waitFor("reload rejected", from)).toContain("fulcrum.yaml:5:");
    const still = await burst(c.url, 20);
    expect(still.every((r) => r.status === 200 && r.backend === "b2")).toBe(true);
    // POST /reload goes through the same path.
    c.dir.write("fulcrum.yaml", `${BASE}pools:\n  web: { backends: ["${a!.url}"] }\n`);
    const r = await fetch(`${c.adminUrl}/reload`, { method: "POST" });
    expect(await r.json()).toEqual({ status: "reloaded", ok: true, problems: [], restart_required: [] });
    expect((await burst(c.url, 20)).every((r) => r.backend === "b1")).toBe(true);
  });

  test("a backend failing its checks (run by the primary) is removed in every worker", async () => {
    let healthy = true;
    const a = startBackend("a");
    const b = startBackend(
      "b",
      (req) =>
        new URL(req.url).pathname === "/healthz"
          ? new Response(null, { status: healthy ? 200 : 503 })
          : new Response("b", { headers: { "x-backend": "b" } }),
    );
    cleanups.push(() => a.stop(), () => b.stop());
    const c = await startCluster(
      `pools:\n  web:\n    backends: ["${a.url}", "${b.url}"]\n` +
        `    health: { path: /healthz, interval: 100ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1 }\n`,
    );
    expect((await burst(c.url, 20)).some((r) => r.backend === "b")).toBe(true);
    const from = c.lines.length;
    healthy = false;
    await c.waitFor(`"state":"unhealthy"`, from);
    const served = b.requests.filter((r) => r.path !== "/healthz").length;
    const after = c.lines.length;
    const results = await burst(c.url);
    expect(results.every((r) => r.status === 200 && r.backend === "a")).toBe(true);
    expect(workersIn(await accessRecords(c, 40, after))).toEqual([1, 2]);
    expect(b.requests.filter((r) => r.path !== "/healthz").length).toBe(served);
    // Only the primary probes: workers send no health checks of their own.
    expect(new Set(b.requests.filter((r) => r.path === "/healthz").map((r) => r.headers.get("user-agent")))).toEqual(
      new Set(["fulcrum-health-check"]),
    );
  });

  test("SIGTERM drains: an in-flight slow request finishes, new connections are refused, exit 0, no worker left", async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let arrived!: () => void;
    const reached = new Promise<void>((r) => (arrived = r));
    const slow = startBackend("slow", async () => {
      arrived();
      await released;
      return new Response("finished");
    });
    cleanups.push(() => slow.stop());
    const c = await startCluster(`shutdown_timeout: 30s\npools:\n  web: { backends: ["${slow.url}"] }\n`);
    const inflight = fetch(c.url).then(async (r) => [r.status, await r.text()]);
    await reached;
    c.proc.kill("SIGTERM");
    await c.waitFor('"message":"shutting down"');
    await expect(fetch(c.url)).rejects.toThrow();
    release();
    expect(await inflight).toEqual([200, "finished"]);
    expect(await c.exited).toBe(0);
    await c.closed; // every process holding the stdout pipe has exited
    for (const pid of c.workers.values()) expect(alive(pid)).toBe(false);
  });

  test("SIGTERM while the workers are still starting: the primary lets them start, drains, exits 0, no worker left", async () => {
    const [a] = startBackends(1);
    cleanups.push(() => a!.stop());
    const dir = tempDir("fulcrum-early-term-");
    const file = dir.write("fulcrum.yaml", BASE + `pools:\n  web: { backends: ["${a!.url}"] }\n`);
    const proc = Bun.spawn([process.execPath, "main.ts", "run", "--config", file], { stdout: "pipe", stderr: "pipe" });
    cleanups.push(() => proc.kill("SIGKILL"));
    const w = watchLines(proc.stdout as ReadableStream<Uint8Array>);
    // The first worker is up; the primary has not said "listening" (it waits for both).
    await w.waitFor('"message":"worker listening"');
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    await w.closed;
    expect(w.lines.some((l) => l.includes('"message":"stopped"'))).toBe(true);
    const pids = w.lines.filter((l) => l.includes('"message":"worker listening"')).map((l) => (JSON.parse(l) as { pid: number }).pid);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  test("workers exit when the primary dies (SIGKILL)", async () => {
    const [a] = startBackends(1);
    cleanups.push(() => a!.stop());
    const c = await startCluster(`pools:\n  web: { backends: ["${a!.url}"] }\n`);
    c.proc.kill("SIGKILL");
    await c.closed;
    for (const pid of c.workers.values()) expect(alive(pid)).toBe(false);
  });

  for (const when of ["before it asked for its config", "after it asked for its config"] as const) {
    test(`a worker whose primary is gone while it starts (${when}) exits instead of waiting for it`, async () => {
      const dir = tempDir("fulcrum-orphan-");
      const file = dir.write("fulcrum.yaml", BASE + 'pools:\n  web: { backends: ["http://127.0.0.1:9"] }\n');
      // A stand-in primary: spawns a worker as the real one does, then leaves at once or after the
      // worker's first message (its request for the config), never answering.
      const parent = dir.write(
        "parent.ts",
        `const early = ${when === "before it asked for its config"};
let leave = () => {};
const w = Bun.spawn([process.execPath, ${JSON.stringify(`${process.cwd()}/main.ts`)}, "run", "--config", ${JSON.stringify(file)}], {
  env: { ...process.env, FULCRUM_WORKER: "1", FULCRUM_WORKERS: "2" },
  stdout: "ignore", stderr: "ignore", serialization: "json",
  ipc: () => leave(),
});
console.log(w.pid);
if (early) process.exit(0);
leave = () => process.exit(0);
`,
      );
      const p = Bun.spawn([process.execPath, parent], { stdout: "pipe" });
      const pid = Number((await new Response(p.stdout).text()).trim());
      await p.exited;
      expect(pid).toBeGreaterThan(0);
      cleanups.push(() => void (alive(pid) && process.kill(pid, "SIGKILL")));
      for (let i = 0; i < 500 && alive(pid); i++) await new Promise((r) => setTimeout(r, 10));
      expect(alive(pid)).toBe(false);
    });
  }

  test("a bad config or plugin exits 2 with its problems, before anything listens", async () => {
    const port = closedPort();
    const admin = closedPort();
    const dir = tempDir("fulcrum-workers-");
    const head = `listen: 127.0.0.1:${port}\nworkers: 2\nadmin: { listen: 127.0.0.1:${admin} }\n`;
    const bad = dir.write("bad.yaml", `${head}pools:\n  web: { backends: [{ url: "http://127.0.0.1:1", weight: -3 }] }\n`);
    const r = await runCli(["run", "--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("bad.yaml:5:58: pools.web.backends[0].weight must be a whole number >= 0 (0 drains the backend), got -3");
    expect(r.stdout).not.toContain("listening");

    dir.write("broken.ts", "export default { kind: 'strategy', name: 'x', create: () => ({ pick: (bs) => bs[ }) };\n");
    const plugin = dir.write(
      "plugin.yaml",
      `${head}pools:\n  web: { strategy: { plugin: ./broken.ts }, backends: ["http://127.0.0.1:1"] }\n`,
    );
    const p = await runCli(["run", "--config", plugin]);
    expect(p.code).toBe(2);
    expect(p.stderr).toContain("plugin ./broken.ts: syntax error at");
    expect(p.stdout).not.toContain("listening");
    for (const x of [port, admin]) await expect(fetch(`http://127.0.0.1:${x}/`)).rejects.toThrow();
  });
});

test("workers is validated like every key (file:line:col)", () => {
  const yaml = (w: string) => `workers: ${w}\npools:\n  web: { backends: ["http://127.0.0.1:1"] }\n`;
  expect(parseConfig(yaml("auto"), { file: "f.yaml", env: () => undefined }).workers).toBe("auto");
  expect(parseConfig(yaml("4"), { file: "f.yaml", env: () => undefined }).workers).toBe(4);
  expect(parseConfig('pools:\n  web: { backends: ["http://127.0.0.1:1"] }\n', { file: "f.yaml", env: () => undefined }).workers).toBe(
    "auto",
  );
  for (const bad of ["0", "2.5", "many", "-1"]) {
    expect(() => parseConfig(yaml(bad), { file: "f.yaml", env: () => undefined })).toThrow(
      `f.yaml:1:10: workers must be "auto" (one per CPU core) or a whole number of processes from 1 to 1024, got`,
    );
  }
});
