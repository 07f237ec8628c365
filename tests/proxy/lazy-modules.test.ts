/**
 * Modules a config does not use stay unloaded: Hono only for routes with function middleware (or
 * user plugins), @opentelemetry/api only with tracing on. A real `bun main.ts run` reports the
 * modules it has loaded (tests/fixtures/loaded-modules.ts) after serving a request.
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackend } from "../helpers/backends.ts";
import { watchLines } from "../helpers/fulcrum.ts";
import { tempDir } from "../helpers/plugins.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const { dir } = tempDir("fulcrum-lazy-modules-");
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/**
 * Run `yaml` in a child process, send one request to `path`, and return the modules it has loaded.
 * With `admin`, the admin listener is on (127.0.0.1, a free port) and `admin(url)` runs after that
 * request; the modules are read after it too, and returned beside the ones before it.
 */
async function loadedModules(
  yaml: string,
  path: string,
  headers: Record<string, string> = {},
  admin?: (url: string) => Promise<void>,
): Promise<string[] & { afterAdmin?: string[] }> {
  const backend = startBackend("b1");
  cleanups.push(() => backend.stop());
  const file = join(dir, `c${cleanups.length}.yaml`);
  writeFileSync(
    file,
    `listen: 127.0.0.1:0\nworkers: 1\nadmin: ${
      admin ? "{ listen: 127.0.0.1:0 }" : "{ enabled: false }"
    }\npools:\n  web: { backends: ["${backend.url}"] }\n${yaml}`,
  );
  // No OTEL_* variables: tracing stays off.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_")));
  const proc = Bun.spawn([process.execPath, "--preload", "./tests/fixtures/loaded-modules.ts", "main.ts", "run", "--config", file], {
    cwd: ROOT,
    env,
    stdout: "pipe",
    stderr: "inherit",
  });
  cleanups.push(async () => {
    proc.kill("SIGTERM");
    await proc.exited;
  });
  const watch = watchLines(proc.stdout as ReadableStream<Uint8Array>);
  const adminUrl = admin && (JSON.parse(await watch.waitFor('"message":"admin API listening"')).url as string);
  const url = JSON.parse(await watch.waitFor('"message":"listening"')).url as string;
  const res = await fetch(url + path, { headers });
  await res.arrayBuffer();
  expect(res.status).toBe(200);
  const report = async () => {
    const from = watch.lines.length;
    proc.kill("SIGUSR2");
    return JSON.parse(await watch.waitFor('"message":"loaded modules"', from)).modules as string[];
  };
  const modules: string[] & { afterAdmin?: string[] } = await report();
  if (admin) {
    await admin(adminUrl as string);
    modules.afterAdmin = await report();
  }
  return modules;
}

const hono = (m: string) => m.includes("/node_modules/hono/");
const otelApi = (m: string) => m.includes("/node_modules/@opentelemetry/api/");

test("a config without function middleware and without tracing loads neither Hono nor @opentelemetry/api", async () => {
  const modules = await loadedModules("", "/");
  expect(modules.some((m) => m.endsWith("/core/proxy/gateway.ts"))).toBe(true);
  expect(modules.filter(hono)).toEqual([]);
  expect(modules.filter(otelApi)).toEqual([]);
});

test("a route with function middleware loads Hono (the check above sees loaded modules)", async () => {
  const plugin = join(ROOT, "plugins", "api-key.ts");
  const modules = await loadedModules(
    `routes:\n  - pool: web\n    middleware:\n      - plugin: ${plugin}\n        options: { keys: [k1] }\n`,
    "/",
    { "x-api-key": "k1" },
  );
  expect(modules.filter(hono).length).toBeGreaterThan(0);
  expect(modules.filter(otelApi)).toEqual([]);
});

test("the admin API (Hono) is loaded by the first admin request, not to serve the first proxied one", async () => {
  const modules = await loadedModules("", "/", {}, async (url) => {
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const ready = await fetch(`${url}/ready`);
    expect(await ready.json()).toEqual({ status: "ready" });
  });
  expect(modules.filter(hono)).toEqual([]);
  expect(modules.some((m) => m.endsWith("/core/admin/listen.ts"))).toBe(true);
  expect(modules.some((m) => m.endsWith("/core/admin/admin.ts"))).toBe(false);
  expect(modules.afterAdmin!.filter(hono).length).toBeGreaterThan(0);
  expect(modules.afterAdmin!.some((m) => m.endsWith("/core/admin/admin.ts"))).toBe(true);
});
