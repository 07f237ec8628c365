import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunRuntime } from "../../core/runtime/bun.ts";
import pkg from "../../package.json" with { type: "json" };
import { pluginFailureCounts } from "../../core/plugins/isolate.ts";
import { runCli } from "../helpers/fulcrum.ts";
import { ROOT, startFromFile, tempDir } from "../helpers/plugins.ts";
import { testScope } from "../helpers/scope.ts";

const { cleanups, backends } = testScope();

async function serveFile(file: string) {
  const f = await startFromFile(file);
  cleanups.push(() => f.stop());
  return f;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await fetch(url, { headers });
  return { status: r.status, backend: r.headers.get("x-backend"), headers: r.headers, body: await r.text() };
}

// A strategy that always picks the second backend, so its effect is unmistakable.
const strategies = {
  "a path relative to the config": `export default { kind: "strategy", name: "second", create: () => ({ pick: (bs) => bs[1] }) };`,
  "a plugin importing a relative helper":
    `import { second } from "./lib/pick.ts";\nexport default { kind: "strategy", name: "second", create: () => ({ pick: second }) };`,
  'a plugin importing "fulcrum"': `import { version, type StrategyPlugin } from "fulcrum";\n` +
    `export default { kind: "strategy", name: "second", create: () => ({ pick: (bs) => (version === "${pkg.version}" ? bs[1] : bs[0]) }) } satisfies StrategyPlugin;`,
};
const middlewares = {
  "a path relative to the config":
    `export default { kind: "middleware", name: "tag", create: (o) => async (c, next) => { await next(); c.header("x-tag", o.tag); } };`,
  "a plugin importing a relative helper":
    `import { tag } from "./lib/tag.ts";\nexport default { kind: "middleware", name: "tag", create: (o) => tag(o.tag) };`,
  'a plugin importing "fulcrum"': `import { clientIp, version, type MiddlewarePlugin } from "fulcrum";\n` +
    `export default { kind: "middleware", name: "tag", create: (o: { tag: string }) => async (c, next) => { await next(); c.header("x-tag", o.tag + " " + version + " " + clientIp(c)); } } satisfies MiddlewarePlugin<{ tag: string }>;`,
};

describe("loading plugins from files", () => {
  test("an import, loaded or failed, leaves nothing in the temp folder", async () => {
    const bundles = () => readdirSync(tmpdir()).filter((n) => /^fulcrum-plugins?-/.test(n));
    const t = tempDir("fulcrum-test-");
    const before = new Set(bundles());
    const good = t.write("good.ts", `export default { kind: "strategy", name: "g", create: () => ({ pick: (bs) => bs[0] }) };`);
    const bad = t.write("bad.ts", `throw new Error("boom at load");\nexport default {};`);
    expect((await bunRuntime.importPlugin(good, { fresh: true })).module.default).toBeDefined();
    await expect(bunRuntime.importPlugin(bad, { fresh: true })).rejects.toThrow("boom at load");
    expect(bundles().filter((n) => !before.has(n))).toEqual([]);
  });

  for (const [how, source] of Object.entries(strategies)) {
    test(`a strategy from ${how}`, async () => {
      const [a, b] = backends(2);
      const t = tempDir();
      t.write("plugins/lib/pick.ts", "export const second = (bs: readonly unknown[]) => bs[1];\n");
      t.write("plugins/second.ts", source);
      const cfg = t.write(
        "conf/../fulcrum.yaml",
        `pools:\n  web:\n    strategy: { plugin: ./plugins/second.ts }\n    backends: ["${a!.url}", "${b!.url}"]\n`,
      );
      const f = await serveFile(cfg);
      for (let i = 0; i < 4; i++) expect((await get(f.url)).backend).toBe("b2");
    });
  }

  for (const [how, source] of Object.entries(middlewares)) {
    test(`a middleware from ${how}`, async () => {
      const [a] = backends(1);
      const t = tempDir();
      t.write(
        "plugins/lib/tag.ts",
        "export const tag = (v: string) => async (c: any, next: () => Promise<void>) => { await next(); c.header('x-tag', v); };\n",
      );
      t.write("plugins/tag.ts", source);
      const cfg = t.write(
        "fulcrum.yaml",
        `pools:\n  web: { backends: ["${
          a!.url
        }"] }\nroutes:\n  - pool: web\n    middleware:\n      - plugin: ./plugins/tag.ts\n        options: { tag: hello }\n`,
      );
      const f = await serveFile(cfg);
      const r = await get(f.url);
      expect(r.status).toBe(200);
      expect(r.backend).toBe("b1");
      expect(r.headers.get("x-tag")).toStartWith("hello");
      if (how.includes("fulcrum")) expect(r.headers.get("x-tag")).toBe(`hello ${pkg.version} 127.0.0.1`);
    });
  }

  test("the same plugin file used by two pools is loaded once and registered once", async () => {
    const [a, b] = backends(2);
    const t = tempDir();
    t.write("second.ts", strategies["a path relative to the config"]);
    const cfg = t.write(
      "f.yaml",
      `pools:\n  one: { strategy: { plugin: ./second.ts }, backends: ["${a!.url}", "${b!.url}"] }\n` +
        `  two: { strategy: { plugin: second.ts }, backends: ["${b!.url}", "${
          a!.url
        }"] }\nroutes:\n  - { match: { path: /one }, pool: one }\n  - { match: { path: /two }, pool: two }\n`,
    );
    const f = await serveFile(cfg);
    expect((await get(`${f.url}/one`)).backend).toBe("b2");
    expect((await get(`${f.url}/two`)).backend).toBe("b1");
  });
});

describe("bad plugins: message with the config line and the plugin path, non-zero exit, nothing listening", () => {
  const t = tempDir();
  t.write("ok-mw.ts", `export default { kind: "middleware", name: "ok-mw", create: () => async (c, next) => { await next(); } };`);
  t.write("bad-syntax.ts", `export default {\n  kind: "strategy",\n  name: "x" +,\n};\n`);
  t.write("no-default.ts", `export const plugin = { kind: "strategy", name: "x", create() {} };\n`);
  t.write("wrong-shape.ts", `export default { kind: "strategy", name: "x" };\n`);
  t.write("throws-on-load.ts", `throw new Error("top-level boom");\nexport default {};\n`);
  t.write(
    "bad-helper.ts",
    `import { x } from "./nowhere.ts";\nexport default { kind: "strategy", name: "x", create: () => ({ pick: () => x }) };\n`,
  );
  t.write(
    "strict-options.ts",
    `export default { kind: "strategy", name: "strict", create(o) { if (typeof o.header !== "string") throw new TypeError("header must be a string, got " + JSON.stringify(o.header)); return { pick: (bs) => bs[0] }; } };\n`,
  );
  t.write("dup-a.ts", `export default { kind: "strategy", name: "same", create: () => ({ pick: (bs) => bs[0] }) };\n`);
  t.write("dup-b.ts", `export default { kind: "strategy", name: "same", create: () => ({ pick: (bs) => bs[0] }) };\n`);
  t.write("named-rr.ts", `export default { kind: "strategy", name: "round-robin", create: () => ({ pick: (bs) => bs[0] }) };\n`);
  const pool = (plugin: string, opts = "") =>
    `pools:\n  web:\n    strategy: { plugin: ${plugin}${opts} }\n    backends: [http://127.0.0.1:9]\n`;
  const cases: [string, string, string[]][] = [
    ["file not found", pool("./missing.ts"), [
      ":3:15: pools.web.strategy: plugin ./missing.ts: cannot find the file",
      join(t.dir, "missing.ts"),
    ]],
    ["syntax error, with line:col inside the plugin", pool("./bad-syntax.ts"), [
      ":3:15: pools.web.strategy: plugin ./bad-syntax.ts: syntax error at",
      `${join(t.dir, "bad-syntax.ts")}:3:14`,
    ]],
    ["an import that does not resolve", pool("./bad-helper.ts"), [
      `plugin ./bad-helper.ts: cannot resolve an import at ${join(t.dir, "bad-helper.ts")}:1:`,
      "nowhere.ts",
    ]],
    ["no default export", pool("./no-default.ts"), [
      ":3:15: pools.web.strategy: plugin ./no-default.ts: has no default export",
      "found named exports: plugin",
    ]],
    ["default export of the wrong shape", pool("./wrong-shape.ts"), [
      'plugin ./wrong-shape.ts: default export must be { kind: "strategy" | "middleware" | "key" | "discovery", name: string, create: function }, got { kind: "strategy", name: "x", create: undefined }',
    ]],
    ["the wrong kind of plugin", pool("./ok-mw.ts"), [
      'plugin ./ok-mw.ts: is a middleware plugin ("ok-mw"), but a strategy plugin is needed here',
    ]],
    ["module evaluation throwing", pool("./throws-on-load.ts"), ["plugin ./throws-on-load.ts: failed while loading: top-level boom"]],
    ["create() throwing on bad options", pool("./strict-options.ts", ", options: { header: 3 }"), [
      ":3:15: pools.web.strategy: plugin ./strict-options.ts: create() failed: header must be a string, got 3",
    ]],
    [
      "two plugins with the same name",
      pool("./dup-a.ts") +
      `  api:\n    strategy: { plugin: ./dup-b.ts }\n    backends: [http://127.0.0.1:9]\nroutes:\n  - { pool: web }\n  - { match: { path: /api }, pool: api }\n`,
      [':6:15: pools.api.strategy: plugin ./dup-b.ts: a strategy named "same" is already registered (./dup-a.ts)'],
    ],
    ["a plugin named like a built-in", pool("./named-rr.ts"), ['a strategy named "round-robin" is already registered (built-in)']],
    [
      "an unknown built-in middleware",
      `pools:\n  web: { backends: [http://127.0.0.1:9] }\nroutes:\n  - pool: web\n    middleware:\n      - rate-limt: { rate: 1/s }\n`,
      [':6:9: routes[0].middleware[0] names no known middleware, got "rate-limt"; did you mean "rate-limit"?'],
    ],
    [
      "a built-in middleware rejecting its options",
      `pools:\n  web: { backends: [http://127.0.0.1:9] }\nroutes:\n  - pool: web\n    middleware:\n      - rate-limit: { rate: lots }\n`,
      [':6:9: routes[0].middleware[0]: rate-limit: create() failed: rate must be like 100/s, 6000/m or 10/30s, got "lots"'],
    ],
  ];
  let n = 0;
  for (const [name, yaml, expected] of cases) {
    test(name, async () => {
      const cfg = t.write(`c${++n}.yaml`, yaml);
      const r = await runCli(["run", "--config", cfg]);
      expect(r.code).toBe(2);
      for (const e of expected) expect(r.stderr).toContain(e.startsWith(":") ? `${cfg}${e}` : e);
      expect(r.stderr).toContain("nothing was started");
      expect(r.stdout).not.toContain("listening");
    });
  }

  test("check reports every plugin problem at once", async () => {
    const cfg = t.write(
      "all.yaml",
      `pools:\n  web: { strategy: { plugin: ./missing.ts }, backends: [http://127.0.0.1:9] }\n` +
        `routes:\n  - pool: web\n    middleware:\n      - plugin: ./no-default.ts\n      - plugin: ./bad-syntax.ts\n`,
    );
    const r = await runCli(["check", "--config", cfg]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("3 problem(s)");
    expect(r.stderr).toContain(`${cfg}:2:20: pools.web.strategy: plugin ./missing.ts`);
    expect(r.stderr).toContain(`${cfg}:6:9: routes[0].middleware[0]: plugin ./no-default.ts`);
    expect(r.stderr).toContain(`${cfg}:7:9: routes[0].middleware[1]: plugin ./bad-syntax.ts`);
  });
});

describe("isolation: a failing plugin costs only its own requests", () => {
  test("pick() that throws: the request falls back to round robin, logged once per interval, counted", async () => {
    const [a, b] = backends(2);
    const t = tempDir();
    t.write(
      "flaky.ts",
      `export default { kind: "strategy", name: "flaky", create: () => ({ pick(bs, req) { if (req.path === "/boom") throw new Error("kaboom"); return bs[1]; } }) };`,
    );
    const f = await serveFile(
      t.write("f.yaml", `pools:\n  web: { strategy: { plugin: ./flaky.ts }, backends: ["${a!.url}", "${b!.url}"] }\n`),
    );
    const before = pluginFailureCounts.get("flaky") ?? 0;
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await get(`${f.url}/boom`);
      expect(r.status).toBe(200);
      seen.add(r.backend!);
    }
    expect([...seen].sort()).toEqual(["b1", "b2"]); // round robin
    expect((await get(`${f.url}/fine`)).backend).toBe("b2"); // the plugin still decides the others
    expect(pluginFailureCounts.get("flaky")! - before).toBe(20);
    const logged = f.logged("plugin failed");
    expect(logged.length).toBe(1);
    expect(logged[0]!.properties).toMatchObject({ plugin: "flaky", what: "pick() threw", error: "kaboom" });
  });

  test("pick() that returns something that is not an available backend falls back too", async () => {
    const [a, b] = backends(2);
    const t = tempDir();
    t.write(
      "liar.ts",
      `export default { kind: "strategy", name: "liar", create: () => ({ pick: () => ({ id: "10.9.9.9:80", url: "http://10.9.9.9" }) }) };`,
    );
    const f = await serveFile(
      t.write("f.yaml", `pools:\n  web: { strategy: { plugin: ./liar.ts }, backends: ["${a!.url}", "${b!.url}"] }\n`),
    );
    const got = [(await get(f.url)).backend, (await get(f.url)).backend];
    expect(got.sort()).toEqual(["b1", "b2"]);
    expect(f.logged("plugin failed")[0]!.properties.what).toBe("pick() returned something that is not an available backend");
  });

  test("a middleware that throws: 500 for that request, the others are served", async () => {
    const [a] = backends(1);
    const t = tempDir();
    t.write(
      "boom.ts",
      `import { HTTPException } from "fulcrum";\nexport default { kind: "middleware", name: "boom", create: () => async (c, next) => {\n` +
        `  if (c.req.path === "/boom") throw new Error("middleware kaboom");\n  if (c.req.path === "/teapot") throw new HTTPException(418, { message: "short and stout" });\n  await next();\n} };`,
    );
    const f = await serveFile(
      t.write("f.yaml", `pools:\n  web: { backends: ["${a!.url}"] }\nroutes:\n  - { pool: web, middleware: [ { plugin: ./boom.ts } ] }\n`),
    );
    for (let i = 0; i < 5; i++) expect((await get(`${f.url}/boom`)).status).toBe(500);
    expect((await get(`${f.url}/ok`)).status).toBe(200);
    const tea = await get(`${f.url}/teapot`);
    expect([tea.status, tea.body]).toEqual([418, "short and stout"]);
    expect(f.logged("plugin failed").length).toBe(1);
    expect(f.logged("route failed").length).toBe(0);
  });
});

test("fulcrum types prints a .d.ts that type-checks a plugin outside this repository", async () => {
  const r = await runCli(["types"]);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('declare module "fulcrum" {');
  const t = tempDir();
  t.write("fulcrum.d.ts", r.stdout);
  t.write(
    "canary.ts",
    `import { version, type StrategyPlugin, type MiddlewarePlugin } from "fulcrum";\n` +
      `export default { kind: "strategy", name: "c", create: (o: { header: string }, api) => {\n` +
      `  const fb = api.strategy("round-robin");\n  return { pick: (bs, req) => (req.headers.get(o.header) ? bs[0] : fb.pick(bs, req)) };\n} } satisfies StrategyPlugin<{ header: string }>;\n` +
      `export const mw = { kind: "middleware", name: "m", create: () => async (c, next) => { await next(); c.header("via", version); } } satisfies MiddlewarePlugin;\n`,
  );
  t.write(
    "wrong.ts",
    `import type { StrategyPlugin } from "fulcrum";\nexport default { kind: "strategy", name: "w", create: () => ({ pick: (bs) => bs.length }) } satisfies StrategyPlugin;\n`,
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
      "es2022,dom",
      "--types",
      "",
      "fulcrum.d.ts",
      file,
    ], { cwd: t.dir, stdout: "pipe" });
  const ok = tsc("canary.ts");
  expect(await ok.exited).toBe(0);
  const bad = tsc("wrong.ts");
  expect(await bad.exited).not.toBe(0);
  expect(await new Response(bad.stdout).text()).toContain("wrong.ts");
});
