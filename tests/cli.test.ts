import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { startBackend, type TestBackend } from "./helpers/backends.ts";
import { runCli, spawnFulcrum } from "./helpers/fulcrum.ts";
import { tempDir } from "./helpers/plugins.ts";

const { dir } = tempDir("fulcrum-cli-");
let n = 0;
function configFile(text: string): string {
  const file = join(dir, `c${++n}.yaml`);
  writeFileSync(file, text);
  return file;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe("fulcrum CLI", () => {
  test("version prints the package version", async () => {
    const r = await runCli(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`fulcrum ${pkg.version}`);
  });

  test("--help lists every subcommand", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const cmd of ["[run]", "check", "demo", "version"]) expect(r.stdout).toContain(`fulcrum ${cmd}`);
  });

  test("--version and -v print what `version` prints; -h prints the usage", async () => {
    const version = await runCli(["version"]);
    for (const flag of ["--version", "-v"]) {
      const r = await runCli([flag]);
      expect([r.code, r.stdout, r.stderr]).toEqual([0, version.stdout, ""]);
    }
    const h = await runCli(["-h"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("Usage:");
  });

  test("a bad command line is one line and the usage on stderr, exit 2", async () => {
    const cases: [string[], string][] = [
      [["--frobnicate"], "fulcrum: unknown option --frobnicate"],
      [["check", "--confg", "x.yaml"], "fulcrum: unknown option --confg; did you mean --config?"],
      [["-x"], "fulcrum: unknown option -x"],
      [["check", "--config"], "fulcrum: --config needs a value"],
      [["--help=yes"], "fulcrum: --help takes no value"],
      [["run", "fulcrum.yaml"], 'fulcrum: unexpected argument "fulcrum.yaml" after run'],
    ];
    for (const [args, line] of cases) {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      const lines = r.stderr.split("\n");
      expect(lines[0]).toBe(line);
      expect(lines[1]).toBe("");
      expect(lines[2]).toStartWith("Fulcrum ");
      expect(r.stderr).toContain("Usage:");
    }
  });

  test("a proxy port already in use exits 1, and the log lines written before it are not lost", async () => {
    // Log lines are gathered for up to 50 ms before they are written: an exit must write them.
    const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    cleanups.push(() => busy.stop(true));
    const admin = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const adminPort = admin.port;
    admin.stop(true);
    const file = configFile(
      `listen: 127.0.0.1:${busy.port}\nworkers: 1\nadmin: { listen: "127.0.0.1:${adminPort}" }\npools:\n  web:\n    backends: ["http://127.0.0.1:1"]\n`,
    );
    const r = await runCli(["run", "--config", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Failed to listen");
    expect(r.stdout).toContain('"message":"admin API listening"');
  });

  test("an unknown subcommand exits 2 with one line and the usage", async () => {
    const r = await runCli(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith('fulcrum: unknown command "frobnicate"\n\nFulcrum ');
    expect(r.stderr).toContain("Usage:");
    expect((await runCli(["chek"])).stderr).toStartWith('fulcrum: unknown command "chek"; did you mean "check"?\n');
  });

  test("check prints a summary with the effective settings and exits 0", async () => {
    const file = configFile(
      `pools:\n  web:\n    strategy: least-connections\n    backends:\n      - { url: http://127.0.0.1:9, weight: 2 }\n`,
    );
    const r = await runCli(["check", "--config", file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${file}: OK`);
    expect(r.stdout).toContain("pool web: strategy least-connections");
    expect(r.stdout).toContain("http://127.0.0.1:9 weight 2");
    expect(r.stdout).toContain("timeouts: connect 5s, response 60s, request none");
    expect(r.stdout).toContain("retry: 2 attempt(s) on connect,reset,timeout,502,503,504");
    expect(r.stdout).toContain("health: no active checks");
  });

  test("check warns about routes that can never match, with their place in the file, and still exits 0", async () => {
    const file = configFile(`pools:
  web: { backends: ["http://127.0.0.1:9"] }
routes:
  - match: { path: /api }
    pool: web
  - match: { path: /api }
    pool: web
  - match: { path: /v1, methods: [] }
    pool: web
  - match: { path: /api, path_regex: "^/v2/" }
    pool: web
`);
    const r = await runCli(["check", "--config", file]);
    expect(r.code).toBe(0);
    expect(r.stderr.trim().split("\n")).toEqual([
      `${file}:6:12: warning: routes[1] can never match: routes[0] comes first (docs/routing.md) and takes every request this route matches`,
      `${file}:8:12: warning: routes[2] can never match: match.methods is empty, so no request matches it`,
      `${file}:10:12: warning: routes[3] can never match: match.path_regex /^\\/v2\\// only matches paths starting with /v2/, never under /api`,
    ]);
    expect(r.stdout).toContain("route */api ~^/v2/ → web");
  });

  test("${ENV} substitution with defaults", async () => {
    const file = configFile(`pools:\n  web:\n    backends:\n      - { url: "http://127.0.0.1:\${BACKEND_PORT}", weight: "\${W:-4}" }\n`);
    const r = await runCli(["check", "--config", file], { BACKEND_PORT: "7001" });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("http://127.0.0.1:7001 weight 4");
  });
});

describe("bad config files: every problem reported as file:line:col, exit 2, nothing started", () => {
  const cases: [string, string, string][] = [
    ["YAML syntax", "pools:\n  web: [\n", ":3:1: YAML syntax error: Flow sequence"],
    [
      "wrong type",
      "pools:\n  web:\n    backends: http://a:1\n    timeouts: { response: 5 }\n",
      ":4:27: pools.web.timeouts.response must be a duration like 250ms, 5s or 1m, got 5",
    ],
    [
      "unknown key",
      "pools:\n  web:\n    backends:\n      - { url: http://a:1, wieght: 3 }\n",
      ':4:28: pools.web.backends[0].wieght is not a known key; did you mean "weight"?',
    ],
    [
      "negative weight",
      "pools:\n  web:\n    backends:\n      - { url: http://a:1, weight: -3 }\n",
      ":4:36: pools.web.backends[0].weight must be a whole number >= 0 (0 drains the backend), got -3",
    ],
    [
      "bad URL",
      "pools:\n  web:\n    backends:\n      - url: ftp//a\n",
      ':4:14: pools.web.backends[0].url must be an http:// or https:// URL with a host and no query, got "ftp//a"',
    ],
    ["duplicate pool", "pools:\n  web:\n    backends: [http://a:1]\n  web:\n    backends: [http://b:1]\n", ":4:3: duplicate key"],
    [
      "unknown strategy",
      "pools:\n  web:\n    strategy: round-robbin\n    backends: [http://a:1]\n",
      ':3:15: pools.web.strategy is not a known strategy, got "round-robbin"; did you mean "round-robin"?',
    ],
    [
      "route to a missing pool",
      "pools:\n  web: { backends: [http://a:1] }\nroutes:\n  - { pool: wbe }\n",
      ':4:13: routes[0].pool names no pool, got "wbe"; did you mean "web"?',
    ],
    [
      "zero timeout",
      "pools:\n  web:\n    backends: [http://a:1]\n    timeouts: { response: 0s }\n",
      ':4:27: pools.web.timeouts.response must be more than 0, got "0s"',
    ],
    ["missing env var", 'pools:\n  web: { backends: ["${NOPE_NOT_SET}"] }\n', ":2:21: ${NOPE_NOT_SET} is not set in the environment"],
  ];
  for (const [name, text, expected] of cases) {
    test(name, async () => {
      const file = configFile(text);
      for (const cmd of ["check", "run"]) {
        const r = await runCli([cmd, "--config", file]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`${file}${expected}`);
        expect(r.stderr).toContain("nothing was started");
        expect(r.stdout).not.toContain("listening");
      }
    });
  }

  test("several problems are all reported at once", async () => {
    const file = configFile("listen: nowhere\npools:\n  web:\n    backends:\n      - { url: http://a:1, weight: 1.5 }\n    colour: red\n");
    const r = await runCli(["check", "--config", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:1:9: listen must be host:port`);
    expect(r.stderr).toContain(`${file}:5:36: pools.web.backends[0].weight must be a whole number >= 0 (0 drains the backend), got 1.5`);
    expect(r.stderr).toContain(`${file}:6:5: pools.web.colour is not a known key`);
  });

  test("one mistake of each kind: every stage runs and all of them are reported in one run", async () => {
    // A middleware plugin whose create() rejects a bad option, as plugins are told to.
    writeFileSync(
      join(dir, "strict.ts"),
      `export default { kind: "middleware", name: "strict", create(o: { mode?: unknown }) {\n` +
        `  if (o.mode !== "on" && o.mode !== "off") throw new TypeError("mode must be on or off, got " + JSON.stringify(o.mode));\n` +
        `  return async (_c: unknown, next: () => Promise<void>) => { await next(); };\n} };\n`,
    );
    const file = configFile(
      [
        "pools:",
        "  web:",
        "    backends:",
        "      - { url: http://127.0.0.1:9001, wieght: 2 }", // 4: unknown key
        "      - url: ftp//nowhere", // 5: bad URL
        "    timeouts: { connect: soon }", // 6: bad duration
        "  api:",
        "    strategy: round-robbin", // 8: unknown strategy
        "    backends: [http://127.0.0.1:9002]",
        "  canary:",
        "    strategy: { plugin: ./no-such-plugin.ts }", // 11: missing plugin file
        "    backends: [http://127.0.0.1:9003]",
        "routes:",
        "  - { match: { path: /api }, pool: apii }", // 14: a route naming no pool
        "  - pool: web",
        "    middleware:",
        "      - { plugin: ./strict.ts, options: { mode: maybe } }", // 17: a plugin with a bad option
        "",
      ].join("\n"),
    );
    const expected = [
      `${file}:4:39: pools.web.backends[0].wieght is not a known key; did you mean "weight"?`,
      `${file}:5:14: pools.web.backends[1].url must be an http:// or https:// URL with a host and no query, got "ftp//nowhere"`,
      `${file}:6:26: pools.web.timeouts.connect must be a duration like 250ms, 5s or 1m, got "soon"`,
      `${file}:8:15: pools.api.strategy is not a known strategy, got "round-robbin"; did you mean "round-robin"?`,
      `${file}:11:15: pools.canary.strategy: plugin ./no-such-plugin.ts: cannot find the file ${join(dir, "no-such-plugin.ts")}`,
      `${file}:14:36: routes[0].pool names no pool, got "apii"; did you mean "api"?`,
      `${file}:17:9: routes[1].middleware[0]: plugin ./strict.ts: create() failed: mode must be on or off, got "maybe"`,
    ];
    for (const cmd of ["check", "run"]) {
      const r = await runCli([cmd, "--config", file]);
      expect(r.code).toBe(2);
      const lines = r.stderr.trimEnd().split("\n");
      // In file order, one line each, then what could not be checked, then the count.
      expect(lines.filter((l) => /^\d+:\d+: /.test(l.slice(file.length + 1))).map((l) => l.split(" (known:")[0])).toEqual(expected);
      expect(lines).toContain(
        `${file}: not created because of the problems above, so their options are unchecked: pools.api.strategy, pools.canary.strategy`,
      );
      expect(lines.at(-1)).toBe("7 problem(s); nothing was started.");
      expect(r.stdout).not.toContain("listening");
    }
  });

  test("what cannot be checked is said, in one line", async () => {
    const yaml = await runCli(["check", "--config", configFile("pools:\n  web: [\n")]);
    expect(yaml.code).toBe(2);
    expect(yaml.stderr).toContain(": YAML syntax error; nothing else could be checked\n1 problem(s); nothing was started.");
    const pools = await runCli([
      "check",
      "--config",
      configFile("pools: 3\nroutes:\n  - { pool: web, middleware: [ { rate-limit: { rate: banana } } ] }\n"),
    ]);
    expect(pools.code).toBe(2);
    expect(pools.stderr).toContain("pools must be a map of pool name: pool, got 3");
    // The routes' middleware is still created (and its bad option found); their pools cannot be checked.
    expect(pools.stderr).toContain("routes[0].middleware[0]: rate-limit: create() failed: rate must be like 100/s");
    expect(pools.stderr).toContain("pools is not a map, so no pool's strategy and no route's pool could be checked");
    expect(pools.stderr).toContain("2 problem(s); nothing was started.");
  });

  test("a missing file is a clear error", async () => {
    const r = await runCli(["check", "--config", join(dir, "nope.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("nope.yaml:1:1: cannot read the config file");
  });
});

describe("graceful shutdown", () => {
  async function slowSetup(shutdownTimeout: string) {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let arrived!: () => void;
    const reached = new Promise<void>((r) => (arrived = r));
    const backend: TestBackend = startBackend("slow", async () => {
      arrived();
      await released;
      return new Response("finished");
    });
    cleanups.push(() => backend.stop());
    const file = configFile(`listen: 127.0.0.1:0\nshutdown_timeout: ${shutdownTimeout}\npools:\n  web: { backends: ["${backend.url}"] }\n`);
    const child = await spawnFulcrum(["run", "--config", file]);
    cleanups.push(() => child.kill("SIGKILL"));
    return { child, release, reached };
  }

  test("SIGTERM lets a slow in-flight request finish, refuses new connections, then exits 0", async () => {
    const { child, release, reached } = await slowSetup("30s");
    const inflight = fetch(child.url).then(async (r) => [r.status, await r.text()]);
    await reached;
    child.kill("SIGTERM");
    await waitForLine(child.lines, '"message":"shutting down"');
    await expect(fetch(child.url)).rejects.toThrow();
    release();
    expect(await inflight).toEqual([200, "finished"]);
    expect(await child.exited).toBe(0);
  });

  test("shutdown_timeout bounds the wait for a request that never finishes", async () => {
    const { child, reached } = await slowSetup("200ms");
    const inflight = fetch(child.url).then((r) => r.status, () => "closed");
    await reached;
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    expect(child.lines.some((l) => l.includes("shutdown timeout reached"))).toBe(true);
    await inflight;
  });
});

async function waitForLine(lines: string[], needle: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!lines.some((l) => l.includes(needle))) {
    if (Date.now() > deadline) throw new Error(`no line with ${needle}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("config/reference.yaml documents a valid config", async () => {
  const r = await runCli(["check", "--config", "config/reference.yaml"]);
  // Its Redis store is reachable only where one runs on 127.0.0.1:6379: a warning, not a problem.
  expect(r.stderr.replace(/^config\/reference\.yaml:\d+:\d+: warning: stores\.shared: .*\n/m, "")).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("pool api: strategy least-connections");
});
