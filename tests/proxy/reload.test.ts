import { describe, expect, test } from "bun:test";
import { startBackend } from "../helpers/backends.ts";
import { runCli } from "../helpers/fulcrum.ts";
import { spawnRun, startFromFile, tempDir } from "../helpers/plugins.ts";
import { testScope } from "../helpers/scope.ts";

const { cleanups, backends } = testScope();

// The strategy reads its choice from a helper file, so a reload must re-read helpers too.
const STRATEGY =
  `import { choice } from "./lib/choice.ts";\nexport default { kind: "strategy", name: "chooser", create: () => ({ pick: (bs) => bs[choice] }) };\n`;
const choice = (i: number) => `export const choice = ${i};\n`;

async function startChild(yaml: (dir: string) => string, extraArgs: string[] = []) {
  const t = tempDir();
  t.write("lib/choice.ts", choice(0));
  t.write("chooser.ts", STRATEGY);
  const cfg = t.write("fulcrum.yaml", yaml(t.dir));
  const child = await spawnRun([process.execPath, "main.ts", "run", "--config", cfg, ...extraArgs]);
  cleanups.push(() => child.stop());
  return { t, cfg, child };
}

describe("reload under load (child process, SIGHUP)", () => {
  test("2,000+ requests at concurrency 20: all answered; after the reload, the new helper code decides; a broken edit changes nothing", async () => {
    const [a, b] = backends(2);
    const { t, child } = await startChild(() =>
      `listen: 127.0.0.1:0\npools:\n  web: { strategy: { plugin: ./chooser.ts }, backends: ["${a!.url}", "${
        b!.url
      }"] }\nlog: { access_log: false }\n`
    );

    // At least 2,000, and on until 100 have started after the reload (a reload bundles the plugin,
    // which can outlast 1,500 requests), bounded at 20,000.
    const TOTAL = 2000;
    const MIN_AFTER = 100;
    const MAX = 20_000;
    const results: { status: number; backend: string | null; startedAfterReload: boolean }[] = [];
    const errors: unknown[] = [];
    let started = 0;
    let startedAfter = 0;
    let reloaded = false;
    let reload: Promise<void> | undefined;
    await Promise.all(Array.from({ length: 20 }, async () => {
      while ((started < TOTAL || startedAfter < MIN_AFTER) && started < MAX) {
        started++;
        const after = reloaded;
        if (after) startedAfter++;
        try {
          const r = await fetch(child.url);
          await r.arrayBuffer();
          results.push({ status: r.status, backend: r.headers.get("x-backend"), startedAfterReload: after });
        } catch (e) {
          errors.push(e);
        }
        if (results.length === 500 && !reload) {
          reload = (async () => {
            t.write("lib/choice.ts", choice(1));
            const from = child.lines.length;
            child.proc.kill("SIGHUP");
            await child.waitFor('"message":"reloaded"', from);
            reloaded = true;
          })();
        }
      }
    }));
    await reload;
    expect(errors).toEqual([]);
    expect(results.length).toBe(started);
    expect(results.length).toBeGreaterThanOrEqual(TOTAL);
    expect(results.every((r) => r.status === 200)).toBe(true);
    const before = results.slice(0, 500);
    const after = results.filter((r) => r.startedAfterReload);
    expect(before.every((r) => r.backend === "b1")).toBe(true);
    expect(after.length).toBeGreaterThanOrEqual(MIN_AFTER);
    expect(after.every((r) => r.backend === "b2")).toBe(true);

    // A broken edit: rejected with its error, and the code from the last good reload keeps serving.
    t.write("chooser.ts", "export default { kind: 'strategy', name: 'chooser', create: () => ({ pick: (bs) => bs[ }) };\n");
    const from = child.lines.length;
    child.proc.kill("SIGHUP");
    const rejected = await child.waitFor("reload rejected", from);
    expect(rejected).toContain("plugin ./chooser.ts: syntax error at");
    for (let i = 0; i < 10; i++) expect((await fetch(child.url)).headers.get("x-backend")).toBe("b2");
    child.proc.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  });
});

describe("reload (in-process)", () => {
  test("backends that stay keep their state; in-flight requests finish on the configuration they started on", async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let arrived!: () => void;
    const reached = new Promise<void>((r) => (arrived = r));
    const slow = startBackend("slow", async (req) => {
      if (new URL(req.url).pathname === "/hold") {
        arrived();
        await released;
      }
      return new Response("slow", { headers: { "x-backend": "slow" } });
    });
    const [other] = backends(1);
    cleanups.push(() => slow.stop());
    const t = tempDir();
    t.write(
      "tag.ts",
      `export default { kind: "middleware", name: "tag", create: (o) => async (c, next) => { await next(); c.header("x-gen", String(o.gen)); } };\n`,
    );
    const yaml = (gen: number, urls: string[]) =>
      `pools:\n  web: { backends: [${
        urls.map((u) => `"${u}"`).join(", ")
      }] }\nroutes:\n  - { pool: web, middleware: [ { plugin: ./tag.ts, options: { gen: ${gen} } } ] }\n`;
    const cfg = t.write("f.yaml", yaml(1, [slow.url, other!.url]));
    const f = await startFromFile(cfg);
    cleanups.push(() => f.stop());

    const oldBackend = f.server.gateway.pools.get("web")!.backends[0]!;
    const removed = f.server.gateway.pools.get("web")!.backends[1]!;
    const held = fetch(`${f.url}/hold`);
    await reached;
    expect(oldBackend.inflight).toBe(1);

    t.write("f.yaml", yaml(2, [slow.url]));
    expect(await f.server.reload()).toEqual({ ok: true, problems: [], restartRequired: [] });
    const pool = f.server.gateway.pools.get("web")!;
    expect(pool.backends[0]).toBe(oldBackend); // the same object: in-flight count, health, latency carried over
    expect(pool.backends.length).toBe(1);
    expect(oldBackend.inflight).toBe(1);

    const fresh = await fetch(`${f.url}/new`);
    expect(fresh.headers.get("x-gen")).toBe("2");
    release();
    const done = await held;
    expect([done.status, done.headers.get("x-gen"), await done.text()]).toEqual([200, "1", "slow"]);
    expect(oldBackend.inflight).toBe(0);
    expect(removed.id).toBe(new URL(other!.url).host);
  });

  test("an invalid config is rejected with file:line:col and the old one keeps serving; listener limits need a restart", async () => {
    const [a] = backends(1);
    const t = tempDir();
    const cfg = t.write("f.yaml", `pools:\n  web: { backends: ["${a!.url}"] }\n`);
    const f = await startFromFile(cfg);
    cleanups.push(() => f.stop());
    t.write("f.yaml", `pools:\n  web: { backends: ["${a!.url}"], strategy: round-robbin }\n`);
    const r = await f.server.reload();
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toStartWith(`${cfg}:2:`);
    expect(r.problems[0]).toContain(": pools.web.strategy is not a known strategy");
    expect(f.logged("reload rejected; the running configuration keeps serving: {problems}").length).toBe(1);
    expect((await fetch(f.url)).status).toBe(200);

    // Settings bound to the listening socket (listen, limits) are kept, with a warning; log applies
    // (tests/telemetry/log-reload.test.ts).
    t.write("f.yaml", `pools:\n  web: { backends: ["${a!.url}"] }\nlimits: { client_idle_timeout: 5s }\nlog: { level: debug }\n`);
    expect((await f.server.reload()).ok).toBe(true);
    const warning = f.records.find((x) => x.level === "warning" && String(x.rawMessage).startsWith("reload cannot change"));
    expect(warning?.properties.keys).toBe("limits.client_idle_timeout");
    expect(f.server.config.limits.client_idle_timeout).not.toBe(5_000);
    expect(f.server.config.log.level).toBe("debug");
    expect((await fetch(f.url)).status).toBe(200);
  });
});

describe("reload triggers", () => {
  test("plugins.watch: true reloads when a plugin's helper file changes", async () => {
    const [a, b] = backends(2);
    const { t, child } = await startChild(() =>
      `listen: 127.0.0.1:0\nplugins: { watch: true }\npools:\n  web: { strategy: { plugin: ./chooser.ts }, backends: ["${a!.url}", "${
        b!.url
      }"] }\n`
    );
    expect((await fetch(child.url)).headers.get("x-backend")).toBe("b1");
    const from = child.lines.length;
    t.write("lib/choice.ts", choice(1));
    await child.waitFor('"message":"reloaded"', from);
    expect((await fetch(child.url)).headers.get("x-backend")).toBe("b2");
  });

  test("fulcrum reload --pid-file signals the running process; a new listen address is refused with a warning", async () => {
    const [a, b] = backends(2);
    const pidFile = `${tempDir().dir}/fulcrum.pid`;
    const yaml = (listen: string) =>
      `listen: ${listen}\npools:\n  web: { strategy: { plugin: ./chooser.ts }, backends: ["${a!.url}", "${b!.url}"] }\n`;
    const { t, child } = await startChild(() => yaml("127.0.0.1:0"), ["--pid-file", pidFile]);
    t.write("lib/choice.ts", choice(1));
    t.write("fulcrum.yaml", yaml("127.0.0.1:1"));
    const from = child.lines.length;
    const r = await runCli(["reload", "--pid-file", pidFile]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`sent SIGHUP to ${child.pid}`);
    await child.waitFor('"message":"reloaded"', from);
    expect(await child.waitFor("reload cannot change", from)).toContain('"keys":"listen"');
    expect((await fetch(child.url)).headers.get("x-backend")).toBe("b2");
    const bad = await runCli(["reload"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("fulcrum reload needs --pid PID or --pid-file FILE");
  });
});
