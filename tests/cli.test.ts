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

  test("an unknown subcommand exits 2 with the help", async () => {
    const r = await runCli(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
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
      ":4:36: pools.web.backends[0].weight must be a positive integer, got -3",
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
    const file = configFile("listen: nowhere\npools:\n  web:\n    backends:\n      - { url: http://a:1, weight: 0 }\n    colour: red\n");
    const r = await runCli(["check", "--config", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:1:9: listen must be host:port`);
    expect(r.stderr).toContain(`${file}:5:36: pools.web.backends[0].weight must be a positive integer, got 0`);
    expect(r.stderr).toContain(`${file}:6:5: pools.web.colour is not a known key`);
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
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("pool api: strategy least-connections");
});
