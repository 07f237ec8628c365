import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { startBackend, startBackends, type TestBackend } from "./helpers/backends.ts";
import { spawnListening, type Child } from "./helpers/fulcrum.ts";
import { spawnRun, tempDir } from "./helpers/plugins.ts";
import { startOtlpReceiver } from "./helpers/otlp-receiver.ts";
import { RawClient } from "./helpers/raw-client.ts";
import { run } from "./helpers/h2.ts";
import { startWsBackend, wsConnect } from "./helpers/websocket.ts";
import { startRedis } from "./helpers/redis.ts";

// The compiled binary, alone in an empty folder with a clean environment, and the same main.ts
// under Deno: both must proxy like `bun main.ts` does.
const ROOT = new URL("../", import.meta.url).pathname;
const DENO = join(ROOT, "node_modules", ".bin", "deno");
const children: Child[] = [];
let backends: TestBackend[] = [];
let binDir = "";

function configText(): string {
  return `listen: 127.0.0.1:0
pools:
  web:
    backends: [${backends.map((b) => `"${b.url}"`).join(", ")}]
`;
}

async function rotation(url: string): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) seen.push((await fetch(url)).headers.get("x-backend") ?? "?");
  return seen;
}

beforeAll(async () => {
  backends = startBackends(2);
  binDir = mkdtempSync(join(tmpdir(), "fulcrum-bin-"));
  const build = Bun.spawnSync(["./compile.sh", "--outfile", join(binDir, "build", "fulcrum")], {
    cwd: ROOT,
    stderr: "pipe",
    stdout: "pipe",
  });
  if (build.exitCode !== 0) throw new Error(`compile.sh failed: ${build.stderr.toString()}`);
  // Only the binary and a config: no node_modules, no sources.
  mkdirSync(join(binDir, "app"));
  copyFileSync(join(binDir, "build", "fulcrum"), join(binDir, "app", "fulcrum"));
  Bun.spawnSync(["chmod", "+x", join(binDir, "app", "fulcrum")]);
}, 120_000);

afterAll(async () => {
  for (const c of children) {
    c.kill("SIGKILL");
    await c.exited;
  }
  for (const b of backends) await b.stop();
  if (binDir) rmSync(binDir, { recursive: true, force: true }); // two copies of the compiled binary
});

describe("compiled binary (./compile.sh)", () => {
  test("runs from an empty folder with env -i and proxies round robin", async () => {
    const app = join(binDir, "app");
    writeFileSync(join(app, "fulcrum.yaml"), configText());
    const child = await spawnListening(["./fulcrum", "run", "--config", "fulcrum.yaml"], { cwd: app, env: {} });
    children.push(child);
    expect(await rotation(child.url)).toEqual(["b1", "b2", "b1", "b2"]);
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  });

  test("with workers: 2 the binary runs copies of itself as its workers", async () => {
    const app = join(binDir, "app");
    writeFileSync(join(app, "workers.yaml"), `workers: 2\n${configText()}`);
    const child = await spawnRun(["env", "-i", join(app, "fulcrum"), "run", "--config", "workers.yaml"], app);
    try {
      const pids: number[] = [];
      for (let from = 0; pids.length < 2;) {
        const line = await child.waitFor('"message":"worker listening"', from);
        from = child.lines.indexOf(line) + 1;
        pids.push(JSON.parse(line).pid as number);
      }
      for (const pid of pids) expect(readlinkSync(`/proc/${pid}/exe`)).toBe(join(app, "fulcrum"));
      expect((await fetch(child.url)).status).toBe(200);
    } finally {
      await child.stop();
    }
    expect(await child.exited).toBe(0);
  });

  test("serves HTTP/2 with prior knowledge and WebSocket tunnels (node:http2 and the tunnel code are in the binary)", async () => {
    const echo = await startWsBackend();
    try {
      const app = join(binDir, "app");
      writeFileSync(
        join(app, "h2.yaml"),
        configText().replace("listen: 127.0.0.1:0", "listen: { address: 127.0.0.1:0, h2c: true }") +
          `routes:\n  - { match: { path: /ws }, pool: ws }\n  - { match: { path: / }, pool: web }\n` +
          `admin: false\n`,
      );
      // A second pool for the WebSocket backend, added to the pools map.
      const text = readFileSync(join(app, "h2.yaml"), "utf8").replace("pools:\n", `pools:\n  ws:\n    backends: ["${echo.url}"]\n`);
      writeFileSync(join(app, "h2.yaml"), text);
      const child = await spawnListening(["./fulcrum", "run", "--config", "h2.yaml"], { cwd: app, env: {} });
      children.push(child);
      const h2 = await run([
        "curl",
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        `${child.url}/`,
      ]);
      expect(h2.stdout).toBe("2 200");
      const ws = wsConnect(`${child.url}/ws`);
      await ws.opened;
      ws.ws.send("through the binary");
      expect(String((await ws.message(0)).data)).toBe("through the binary");
      ws.ws.close();
      await ws.closed;
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    } finally {
      await echo.stop();
    }
  });

  test("exports a trace per request to an OTLP collector (protobuf), flushed on SIGTERM", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const app = join(binDir, "app");
      writeFileSync(
        join(app, "traced.yaml"),
        `${configText()}telemetry:\n  traces: { endpoint: "${receiver.url}", sample_ratio: 1.0 }\nadmin: false\n`,
      );
      const child = await spawnListening(["./fulcrum", "run", "--config", "traced.yaml"], { cwd: app, env: {} });
      children.push(child);
      expect((await fetch(`${child.url}/traced`)).status).toBe(200);
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      await receiver.waitForSpans(2);
      const server = receiver.spans.find((sp) => sp.kind === "SERVER")!;
      const client = receiver.spans.find((sp) => sp.kind === "CLIENT")!;
      expect(server.attributes["url.path"]).toBe("/traced");
      expect(client.parentSpanId).toBe(server.spanId);
      expect(receiver.requests[0]!.contentType).toContain("protobuf");
    } finally {
      await receiver.stop();
    }
  });

  test("version prints the version and the git commit", () => {
    const r = Bun.spawnSync(["./fulcrum", "version"], { cwd: join(binDir, "app"), env: {} });
    const commit = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: ROOT }).stdout.toString().trim();
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain(`fulcrum ${pkg.version} (commit ${commit}`);
  });

  test("needs nothing but glibc", () => {
    const ldd = Bun.spawnSync(["ldd", join(binDir, "app", "fulcrum")]).stdout.toString();
    const libs = ldd.split("\n").map((l) => l.trim().split(/\s/)[0]!).filter(Boolean);
    expect(libs.length).toBeGreaterThan(0);
    for (const lib of libs) expect(lib).toMatch(/^(linux-vdso\.so|\/lib64\/ld-linux|lib(c|m|dl|pthread|rt)\.so)/);
  });

  test("runs as a non-root user (uid 65534)", async () => {
    const app = join(binDir, "app");
    Bun.spawnSync(["chmod", "755", binDir, app]);
    const child = await spawnListening(
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "./fulcrum", "run", "--config", "fulcrum.yaml"],
      { cwd: app, env: {} },
    );
    children.push(child);
    const uid = (await Bun.file(`/proc/${child.proc.pid}/status`).text()).match(/^Uid:\s+(\d+)/m)?.[1];
    expect(uid).toBe("65534");
    expect((await fetch(child.url)).status).toBe(200);
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  });

  test('runs a strategy and a middleware plugin importing "fulcrum" from an empty folder, reloads them, prints types', async () => {
    const bin = join(binDir, "app", "fulcrum");
    const [a, b] = backends;
    const site = tempDir("fulcrum-site-");
    site.write("lib/choice.ts", "export const choice = 0;\n");
    site.write(
      "chooser.ts",
      `import type { StrategyPlugin } from "fulcrum";\nimport { choice } from "./lib/choice.ts";\n` +
        `export default { kind: "strategy", name: "chooser", create: () => ({ pick: (bs) => bs[choice] }) } satisfies StrategyPlugin;\n`,
    );
    site.write(
      "stamp.ts",
      `import { Hono, version, type MiddlewarePlugin } from "fulcrum";\n` +
        `export default { kind: "middleware", name: "stamp", create: () => async (c, next) => { await next(); c.header("x-stamp", version + (typeof Hono)); } } satisfies MiddlewarePlugin;\n`,
    );
    site.write(
      "fulcrum.yaml",
      `listen: 127.0.0.1:0\npools:\n  web: { strategy: { plugin: ./chooser.ts }, backends: ["${a!.url}", "${b!.url}"] }\n` +
        `routes:\n  - { pool: web, middleware: [ { plugin: ./stamp.ts }, { rate-limit: { rate: 1000/s } } ] }\n`,
    );

    const child = await spawnRun(["env", "-i", bin, "run", "--config", "fulcrum.yaml"], site.dir);
    try {
      const r = await fetch(child.url);
      expect(r.headers.get("x-backend")).toBe("b1");
      expect(r.headers.get("x-stamp")).toBe(`${pkg.version}function`);
      expect(r.headers.get("ratelimit-policy")).toBe('"default";q=1000;w=1');

      site.write("lib/choice.ts", "export const choice = 1;\n");
      const from = child.lines.length;
      child.proc.kill("SIGHUP");
      await child.waitFor('"message":"reloaded"', from);
      expect((await fetch(child.url)).headers.get("x-backend")).toBe("b2");
    } finally {
      await child.stop();
    }
    const types = Bun.spawn(["env", "-i", bin, "types"], { cwd: site.dir, stdout: "pipe" });
    expect(await new Response(types.stdout).text()).toContain("export interface StrategyPlugin");
  });

  test("check validates a config, and reports errors with file:line:col", () => {
    const app = join(binDir, "app");
    writeFileSync(join(app, "bad.yaml"), "pools:\n  web:\n    backends: [{ url: http://a:1, weight: -1 }]\n");
    const ok = Bun.spawnSync(["./fulcrum", "check", "--config", "fulcrum.yaml"], { cwd: app, env: {} });
    expect(ok.exitCode).toBe(0);
    const bad = Bun.spawnSync(["./fulcrum", "check", "--config", "bad.yaml"], { cwd: app, env: {} });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain(
      "bad.yaml:3:43: pools.web.backends[0].weight must be a whole number >= 0 (0 drains the backend), got -1",
    );
  });
});

describe("Deno (deno task start)", () => {
  afterAll(() => {
    for (const f of [`deno-${process.pid}.yaml`, `second-${process.pid}.ts`]) rmSync(join(ROOT, ".tmp", f), { force: true });
  });

  test("compile.sh --runtime deno fails clearly, and in bounded time, where denort cannot be downloaded", () => {
    if (process.env.DENORT_BIN) return; // a machine that can build it; nothing to check here
    const r = Bun.spawnSync(["./compile.sh", "--runtime", "deno", "--outfile", join(binDir, "deno-fulcrum")], {
      cwd: ROOT,
      timeout: 90_000,
    });
    if (r.exitCode === 0) return; // the download worked on this machine
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("deno compile failed");
  }, 100_000);

  test("deno task start serves a config in a folder outside the repository, run from that folder", async () => {
    const site = tempDir("fulcrum-deno-site-");
    // A plugin next to the config, importing "fulcrum" from outside the repository: always the second backend.
    site.write(
      "second.ts",
      `import type { StrategyPlugin } from "fulcrum";\n` +
        `export default { kind: "strategy", name: "second", create: () => ({ pick: (bs) => bs[1] }) } satisfies StrategyPlugin;\n`,
    );
    site.write(
      "fulcrum.yaml",
      configText().replace("  web:\n", "  web:\n    strategy: { plugin: ./second.ts }\n") + "admin: false\nworkers: 1\n",
    );
    // As a user would type it in that folder (no INIT_CWD inherited from an npm run around the tests).
    const { INIT_CWD: _, ...env } = process.env;
    const child = await spawnListening([DENO, "task", "--config", join(ROOT, "deno.json"), "start", "run", "--config", "fulcrum.yaml"], {
      cwd: site.dir,
      env: { ...env, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` } as Record<string, string>,
    }, 30_000);
    children.push(child);
    expect(child.lines.some((l) => l.includes('"runtime":"deno"'))).toBe(true);
    const r = await fetch(`${child.url}/from-elsewhere`);
    expect([r.status, r.headers.get("x-backend")]).toEqual([200, "b2"]);
    expect(backends[1]!.requests.some((q) => q.path === "/from-elsewhere")).toBe(true);
    child.kill("SIGTERM"); // to the process we started, by its pid; `deno task` passes it on
    expect(await child.exited).toBe(0);
  }, 60_000);

  test(
    "our HTTP/1.1 listener and upstream client on Deno's TCP: 2 MiB each way unchanged, keep-alive, pipelining, a client's FIN, a WebSocket tunnel",
    async () => {
      // Echoes the request body, or sends `?size` bytes of a pattern: both larger than the socket's 256 KiB write queue.
      const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 10)) & 255);
      const echo = startBackend("echo", async (req) => {
        const size = Number(new URL(req.url).searchParams.get("size") ?? -1);
        return new Response(size >= 0 ? pattern(size) : await req.arrayBuffer(), { headers: { "x-backend": "echo" } });
      });
      mkdirSync(join(ROOT, ".tmp"), { recursive: true }); // run first in a fresh checkout, no other test made it yet
      const file = join(ROOT, ".tmp", `deno-raw-${process.pid}.yaml`);
      const ws = await startWsBackend();
      writeFileSync(
        file,
        `listen: 127.0.0.1:0\nworkers: 1\nadmin: false\nlog: { access_log: false }\n` +
          `pools:\n  e: { backends: ["${echo.url}"] }\n  ws: { backends: ["${ws.url}"] }\n` +
          `routes:\n  - { match: { path: /ws }, pool: ws }\n  - { match: { path: / }, pool: e }\n`,
      );
      try {
        const child = await spawnListening([DENO, "task", "start", "run", "--config", file], {
          cwd: ROOT,
          env: { ...process.env, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` } as Record<string, string>,
        }, 30_000);
        children.push(child);
        const up = pattern(2 * 1024 * 1024 + 3);
        const r1 = await fetch(`${child.url}/up`, { method: "POST", body: up });
        expect(Buffer.from(await r1.arrayBuffer()).equals(Buffer.from(up))).toBe(true);
        const r2 = await fetch(`${child.url}/down?size=${2 * 1024 * 1024 + 5}`);
        expect(Buffer.from(await r2.arrayBuffer()).equals(Buffer.from(pattern(2 * 1024 * 1024 + 5)))).toBe(true);
        // Two requests in one write on one connection: two answers in order.
        const c = await RawClient.connect(Number(new URL(child.url).port));
        c.write("GET /down?size=3 HTTP/1.1\r\nHost: x\r\n\r\nGET /down?size=4 HTTP/1.1\r\nHost: x\r\n\r\n");
        const a = await c.readResponse();
        const b = await c.readResponse();
        expect([a !== "closed" && a.status, b !== "closed" && b.status]).toEqual([200, 200]);
        expect([a !== "closed" && a.body.length, b !== "closed" && b.body.length]).toEqual([3, 4]);
        // The client's FIN with nothing in flight: the listener closes the connection.
        c.end();
        expect(await c.waitClosed(5_000)).toBe(true);
        c.destroy();
        expect(echo.requests.length).toBe(4);
        // A WebSocket is a tunnel over the same connections (the listener hands the socket over).
        const tunnel = wsConnect(`${child.url}/ws`);
        await tunnel.opened;
        tunnel.ws.send("through Deno");
        expect(String((await tunnel.message(0)).data)).toBe("through Deno");
        tunnel.ws.close();
        await tunnel.closed;
        child.kill("SIGTERM");
        expect(await child.exited).toBe(0);
      } finally {
        rmSync(file, { force: true });
        await echo.stop();
        await ws.stop();
      }
    },
    60_000,
  );

  test("serves the same config, with a user strategy plugin", async () => {
    // Started from the repository, which deno task start may read: the config lives inside it.
    const dir = join(ROOT, ".tmp");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `deno-${process.pid}.yaml`);
    // A user strategy importing "fulcrum" (resolved by deno.json's import map): always the second backend.
    writeFileSync(
      join(dir, `second-${process.pid}.ts`),
      `import { version, type StrategyPlugin } from "fulcrum";\n` +
        `export default { kind: "strategy", name: "second-" + version, create: () => ({ pick: (bs) => bs[1] }) } satisfies StrategyPlugin;\n`,
    );
    const receiver = await startOtlpReceiver();
    writeFileSync(
      file,
      configText().replace("  web:\n", `  web:\n    strategy: { plugin: ./second-${process.pid}.ts }\n`) +
        `telemetry:\n  traces: { endpoint: "${receiver.url}", protocol: http/json }\nadmin: false\nworkers: 2\n`,
    );
    const child = await spawnListening([DENO, "task", "start", "run", "--config", file], {
      cwd: ROOT,
      env: { ...process.env, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` } as Record<string, string>,
    }, 30_000);
    children.push(child);
    expect(child.lines.some((l) => l.includes('"runtime":"deno"'))).toBe(true);
    // Deno has no IPC for worker processes: one process serves, and says so.
    expect(child.lines.some((l) => l.includes("is not supported on") && l.includes('"workers":2'))).toBe(true);
    expect(await rotation(child.url)).toEqual(["b2", "b2", "b2", "b2"]);
    // An absolute-form target's authority replaces the Host line here too (as on Bun's listener).
    const raw = await RawClient.connect(Number(new URL(child.url).port));
    raw.write("GET http://authority.test:8080/abs-deno HTTP/1.1\r\nHost: other.test\r\n\r\n");
    const reply = await raw.readResponse();
    raw.destroy();
    expect(reply !== "closed" && reply.status).toBe(200);
    const seen = backends[1]!.requests.find((r) => r.path === "/abs-deno")!;
    expect(seen.headers.get("host")).toBe("authority.test:8080");
    expect(seen.headers.get("x-forwarded-host")).toBe("authority.test:8080");
    // Never an empty Host upstream (an HTTP/1.0 request without one gets the backend's), and
    // Cookie lines joined with "; ", as on Bun's listener.
    for (const text of ["GET /h10-deno HTTP/1.0\r\n\r\n", "GET /cookie-deno HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"]) {
      const c = await RawClient.connect(Number(new URL(child.url).port));
      c.write(text);
      const r = await c.readResponse();
      c.destroy();
      expect(r !== "closed" && r.status).toBe(200);
    }
    expect(backends[1]!.requests.find((r) => r.path === "/h10-deno")!.headers.get("host")).toBe(`127.0.0.1:${backends[1]!.port}`);
    expect(backends[1]!.requests.find((r) => r.path === "/cookie-deno")!.headers.get("cookie")).toBe("a=1; b=2");
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    // Tracing works under Deno too: 7 requests, a SERVER and a CLIENT span each, flushed at exit.
    await receiver.waitForSpans(14);
    expect(receiver.spans.filter((sp) => sp.kind === "SERVER").length).toBe(7);
    await receiver.stop();
  }, 60_000);
});

describe("compiled binary with a Redis store", () => {
  test("the binary carries its Redis client (loaded only for stores) and limits through a real redis-server", async () => {
    const redis = await startRedis();
    try {
      const app = join(binDir, "app");
      writeFileSync(
        join(app, "store.yaml"),
        configText() + `admin: false\nworkers: 1\nstores:\n  shared: { redis: "${redis.url}", prefix: "bin:" }\n` +
          `routes:\n  - match: { path: / }\n    pool: web\n    middleware:\n      - rate-limit: { rate: 1/m, burst: 2, store: shared }\n`,
      );
      const child = await spawnListening(["./fulcrum", "run", "--config", "store.yaml"], { cwd: app, env: {} });
      children.push(child);
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await fetch(`${child.url}/`)).status);
      expect(statuses).toEqual([200, 200, 429]);
      expect(await redis.cli("KEYS", "bin:*")).toContain("bin:rl:default:1/m:2:client-ip:");
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    } finally {
      await redis.stop();
    }
  });
});
