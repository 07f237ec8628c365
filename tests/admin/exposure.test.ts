// The admin API drains backends, changes weights and reloads: off loopback it needs a token, or an
// explicit `admin.insecure: true`. Checked when the config is validated, so `fulcrum run` exits 2
// before anything listens and `fulcrum check` reports it the same way.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { parseConfig } from "../../core/config/load.ts";
import { isLoopback } from "../../core/config/exposure.ts";
import { runCli } from "../helpers/fulcrum.ts";
import { spawnRun, tempDir } from "../helpers/plugins.ts";
import { testScope } from "../helpers/scope.ts";

setDefaultTimeout(30_000);
const { cleanups, backend } = testScope();

const yaml = (admin: string, extra = "") =>
  `listen: 127.0.0.1:0\nworkers: 1\nadmin: ${admin}\n${extra}pools:\n  web: { backends: ["http://127.0.0.1:9"] }\n`;
const parse = (text: string, env: Record<string, string> = {}) => parseConfig(text, { file: "f.yaml", env: (n) => env[n] });

describe("admin.listen off loopback without a token", () => {
  test("fulcrum run exits 2 with file:line:col before anything listens, with one process or workers", async () => {
    for (const workers of [1, 2]) {
      const dir = tempDir("fulcrum-exposure-");
      const file = dir.write("fulcrum.yaml", yaml("{ listen: 0.0.0.0:0 }").replace("workers: 1", `workers: ${workers}`));
      const r = await runCli(["run", "--config", file], { FULCRUM_ADMIN_TOKEN: "" });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `${file}:3:18: admin.listen 0.0.0.0:0 is not a loopback address, so it needs admin.token (or FULCRUM_ADMIN_TOKEN), ` +
          "or admin.insecure: true to serve the admin API there without one",
      );
      expect(r.stderr).toContain("1 problem(s); nothing was started.");
      expect(r.stdout).not.toContain('"message":"listening"');
      expect(r.stdout).not.toContain("admin API listening");
    }
  });

  test("fulcrum check reports it the same way", async () => {
    const file = tempDir("fulcrum-exposure-").write("fulcrum.yaml", yaml('{ listen: "[::]:9090" }'));
    const r = await runCli(["check", "--config", file], { FULCRUM_ADMIN_TOKEN: "" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:3:18: admin.listen [::]:9090 is not a loopback address, so it needs admin.token`);
  });

  test("a token (in the config or the environment) or admin.insecure: true makes it valid", () => {
    expect(() => parse(yaml("{ listen: 0.0.0.0:9090 }"))).toThrow("admin.listen 0.0.0.0:9090 is not a loopback address");
    expect(() => parse(yaml("{ listen: 9090 }"))).toThrow("admin.listen 0.0.0.0:9090 is not a loopback address");
    expect(parse(yaml("{ listen: 0.0.0.0:9090, token: s3cret }")).admin.token).toBe("s3cret");
    expect(parse(yaml("{ listen: 0.0.0.0:9090 }"), { FULCRUM_ADMIN_TOKEN: "s3cret" }).admin.listen?.hostname).toBe("0.0.0.0");
    expect(parse(yaml("{ listen: 10.1.2.3:9090, insecure: true }")).admin.insecure).toBe(true);
    expect(parse(yaml("{ enabled: false, listen: 0.0.0.0:9090 }")).admin.enabled).toBe(false);
    expect(parse(yaml("false")).admin.enabled).toBe(false);
  });

  test("loopback is 127.0.0.0/8, ::1 and localhost; anything else is not", () => {
    for (const h of ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"])
      expect([h, isLoopback(h)]).toEqual([h, true]);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "192.168.1.1", "localhost.example.com", "admin.internal", "::2"]) {
      expect([h, isLoopback(h)]).toEqual([h, false]);
    }
    for (const listen of ["127.0.0.2:9090", "'[::1]:9090'", "localhost:9090"]) {
      expect(parse(yaml(`{ listen: ${listen} }`)).admin.enabled).toBe(true);
    }
  });

  test("admin.insecure: true starts, and says so in a warning", async () => {
    const b = backend("b1");
    const file = tempDir("fulcrum-exposure-").write(
      "fulcrum.yaml",
      yaml('{ listen: "0.0.0.0:0", insecure: true }').replace("http://127.0.0.1:9", b.url),
    );
    const c = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
    cleanups.push(() => c.stop());
    const warning = JSON.parse(await c.waitFor("without a token"));
    expect(warning.level).toBe("WARN");
    expect((await fetch(c.url)).status).toBe(200);
  });
});
