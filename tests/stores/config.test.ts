// The `stores` key: validated with file:line:col errors, referenced by name from rate-limit, and
// checked by `fulcrum check`, where an unreachable store is a warning, not an error.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../core/config/load.ts";
import { builtinRegistry } from "../../main.ts";
import { closedPort } from "../helpers/backends.ts";
import { runCli } from "../helpers/fulcrum.ts";
import { tempDir } from "../helpers/plugins.ts";
import { startRedis, type TestRedis } from "../helpers/redis.ts";

const registry = builtinRegistry();
function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, { file: "f.yaml", env: () => undefined, middlewareNames: registry.middlewareNames() });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
}

const config = (stores: string, limit = "{ rate: 100/s, store: shared }") =>
  `pools:
  web: { backends: [{ url: http://127.0.0.1:1 }] }
${stores}
routes:
  - match: { path: /api }
    pool: web
    middleware:
      - rate-limit: ${limit}
`;

describe("stores in the config", () => {
  test("defaults: prefix fulcrum:, timeout 50ms, on_error allow, batch true", () => {
    const c = parseConfig(config(`stores:\n  shared: { redis: "redis://127.0.0.1:6379/0" }`), { file: "f.yaml", env: () => undefined });
    expect(c.stores).toEqual({
      shared: { redis: "redis://127.0.0.1:6379/0", prefix: "fulcrum:", timeout: 50, on_error: "allow", batch: true },
    });
  });

  test("a rate-limit store that names no declared store is a file:line:col error with a suggestion", () => {
    expect(problems(config(`stores:\n  shared: { redis: "redis://127.0.0.1:6379/0" }`, "{ rate: 100/s, store: sahred }"))).toEqual([
      'f.yaml:9:43: routes[0].middleware[0].rate-limit.store names no store, got "sahred"; did you mean "shared"?',
    ]);
    expect(problems(config("", "{ rate: 100/s, store: shared }"))).toEqual([
      'f.yaml:8:43: routes[0].middleware[0].rate-limit.store names no store, got "shared" (declare it under the top-level stores)',
    ]);
  });

  test("bad URL, on_error and timeout values are reported where they are", () => {
    expect(problems(config(`stores:\n  shared: { redis: "http://127.0.0.1:6379", on_error: maybe, timeout: 0ms }`))).toEqual([
      'f.yaml:4:20: stores.shared.redis must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL, got "http://127.0.0.1:6379"',
      'f.yaml:4:55: stores.shared.on_error must be "allow" or "deny", got "maybe"',
      'f.yaml:4:71: stores.shared.timeout must be a duration from 1ms to 10s, like 50ms, got "0ms"',
    ]);
  });
});

describe("fulcrum check with stores", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  test("an unreachable store is a warning with its place; the check passes", async () => {
    const port = closedPort();
    const file = tempDir("fulcrum-stores-").write("f.yaml", config(`stores:\n  shared: { redis: "redis://127.0.0.1:${port}/0" }`));
    const r = await runCli(["check", "--config", file]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`${file}:4:20: warning: stores.shared: redis://127.0.0.1:${port}/0 did not answer`);
    expect(r.stderr).toContain("on_error (allow)");
    expect(r.stdout).toContain(`store shared: redis://127.0.0.1:${port}/0`);
  });

  test("a reachable store: no warning", async () => {
    const file = tempDir("fulcrum-stores-").write("f.yaml", config(`stores:\n  shared: { redis: "${redis.url}" }`));
    const r = await runCli(["check", "--config", file]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });
});
