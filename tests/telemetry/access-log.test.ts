// The access log's formats (log.access_format, log.fields), read back by a real parser (GoAccess
// for combined and common), and the record of requests a middleware answered.
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { clfLine, escapeNginx, fieldsLine, timeLocal } from "../../core/telemetry/access-formats.ts";
import { accessLog, type AccessEntry } from "../../core/telemetry/log.ts";
import { BatchingWriter } from "../../core/runtime/batching-writer.ts";
import { parseConfig } from "../../core/config/load.ts";
import { ConfigError } from "../../core/config/load.ts";
import { startBackend } from "../helpers/backends.ts";
import { spawnRun, startFromFile, tempDir } from "../helpers/plugins.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const entry = (over: Partial<AccessEntry> = {}): AccessEntry => ({
  method: "GET",
  path: "/a",
  target: "/a?x=1",
  status: 200,
  route: "*/ → web",
  pool: "web",
  backend: "127.0.0.1:9001",
  bytes: 1234,
  attempts: 1,
  clientIp: "192.0.2.7",
  retryReason: undefined,
  error: undefined,
  referer: "https://example.com/",
  userAgent: "curl/8.0",
  ...over,
});
const T = Date.UTC(2026, 11, 6, 3, 50, 45, 120);

describe("combined and common", () => {
  test("combined is nginx's line: remote_addr, user, [time_local], request, status, bytes, referer, user agent", () => {
    expect(timeLocal(T)).toMatch(/^\d\d\/[A-Z][a-z]{2}\/2026:\d\d:\d\d:\d\d [+-]\d{4}$/);
    expect(clfLine(entry(), true, T)).toBe(
      `192.0.2.7 - - [${timeLocal(T)}] "GET /a?x=1 HTTP/1.1" 200 1234 "https://example.com/" "curl/8.0"\n`,
    );
    expect(clfLine(entry(), false, T)).toBe(`192.0.2.7 - - [${timeLocal(T)}] "GET /a?x=1 HTTP/1.1" 200 1234\n`);
    // Missing headers are "-"; HTTP/2 and 1.0 as nginx names them.
    expect(clfLine(entry({ referer: null, userAgent: null, protocol: "2" }), true, T)).toContain(`"GET /a?x=1 HTTP/2.0" 200 1234 "-" "-"`);
    expect(clfLine(entry({ protocol: "1.0" }), false, T)).toContain(`HTTP/1.0"`);
  });

  test("quotes, backslashes, control characters and non-ASCII bytes are escaped as \\xXX, as nginx does", () => {
    expect(escapeNginx('a"b\\c\u0001é')).toBe("a\\x22b\\x5Cc\\x01\\xC3\\xA9");
    const line = clfLine(entry({ userAgent: 'evil" "x', target: "/\n" }), true, T);
    expect(line.split("\n").length).toBe(2);
    expect(line).toContain(`"GET /\\x0A HTTP/1.1"`);
    expect(line).toContain(`"evil\\x22 \\x22x"`);
  });

  test("fields: only the chosen JSON fields, in the order given; absent optional ones left out", () => {
    const fields = ["status", "@timestamp", "path", "user_agent", "target", "retry_reason", "trace_id"] as const;
    const line = fieldsLine(fields, entry(), 1.5, undefined, undefined, T);
    expect(Object.keys(JSON.parse(line))).toEqual(["status", "@timestamp", "path", "user_agent", "target"]);
    expect(JSON.parse(line)).toEqual({
      status: 200,
      "@timestamp": "2026-12-06T03:50:45.120Z",
      path: "/a",
      user_agent: "curl/8.0",
      target: "/a?x=1",
    });
  });

  test("the access log in each format says what it reads beyond the default line", () => {
    const lines: string[] = [];
    const w = new BatchingWriter({ write: (b) => lines.push(new TextDecoder().decode(b)), flush() {}, close: async () => {} });
    const clock = () => T;
    expect(accessLog(w, undefined, clock).needs).toBeUndefined();
    const combined = accessLog(w, undefined, clock, { access_format: "combined" });
    expect(combined.needs).toEqual({ target: true, headers: true });
    expect(accessLog(w, undefined, clock, { access_format: "common" }).needs).toEqual({ target: true, headers: false });
    expect(accessLog(w, undefined, clock, { fields: ["status", "user_agent"] }).needs).toEqual({ target: false, headers: true });
    combined.write(entry(), 1, undefined);
    w.flush();
    expect(lines.join("")).toBe(clfLine(entry(), true, T));
  });

  test("config: fields need access_format json; an unknown field lists the known ones", () => {
    const parse = (log: string) =>
      parseConfig(`pools: { web: { backends: ["http://127.0.0.1:1"] } }\nlog: ${log}\n`, { file: "f.yaml", env: () => undefined });
    expect(parse("{ access_format: combined }").log.access_format).toBe("combined");
    expect(parse("{ fields: [timestamp, status] }").log.fields).toEqual(["@timestamp", "status"]);
    expect(() => parse("{ access_format: apache }")).toThrow("must be json, combined or common");
    const bad = (log: string) => {
      try {
        parse(log);
      } catch (e) {
        return (e as ConfigError).message;
      }
      throw new Error("accepted");
    };
    expect(bad("{ access_format: combined, fields: [status] }")).toMatch(/f\.yaml:2:\d+: .*set access_format: json/);
    expect(bad("{ fields: [status, colour] }")).toMatch(/f\.yaml:2:\d+: .*unknown access-log field "colour" \(known: @timestamp, level/);
  });
});

describe("requests a middleware answered", () => {
  test("a 401 from a plugin and a 429 from rate-limit are logged with their status, body bytes, route and pool", async () => {
    const backend = startBackend("b");
    cleanups.push(() => backend.stop());
    const dir = tempDir("fulcrum-access-");
    dir.write(
      "deny.ts",
      `import type { MiddlewarePlugin } from "fulcrum";
export default {
  kind: "middleware",
  name: "deny",
  create: () => async (c, next) => {
    if (c.req.header("x-key") !== "k") return c.text("missing or wrong key\\n", 401);
    await next();
  },
} satisfies MiddlewarePlugin;
`,
    );
    const file = dir.write(
      "fulcrum.yaml",
      `pools:\n  web:\n    backends: ["${backend.url}"]\nroutes:\n  - match: { path: /api }\n    pool: web\n    middleware:\n` +
        `      - plugin: ./deny.ts\n      - rate-limit: { rate: 1/m, burst: 1 }\n`,
    );
    const f = await startFromFile(file);
    cleanups.push(() => f.stop());
    const denied = await fetch(`${f.url}/api/x`);
    expect(denied.status).toBe(401);
    expect(await denied.text()).toBe("missing or wrong key\n");
    const ok = await fetch(`${f.url}/api/x`, { headers: { "x-key": "k" } });
    const okBody = await ok.text();
    const limited = await fetch(`${f.url}/api/x`, { headers: { "x-key": "k" } });
    expect(limited.status).toBe(429);
    const limitedBody = await limited.text();
    const access = () => f.records.filter((r) => r.category.join(".") === "fulcrum.access").map((r) => r.properties);
    const until = Date.now() + 5_000;
    while (access().length < 3 && Date.now() < until) await Bun.sleep(5);
    const route = "*/api → web";
    expect(access()).toMatchObject([
      { status: 401, bytes: 21, route, pool: "web", backend: "", attempts: 0 },
      { status: 200, bytes: okBody.length, route, pool: "web", backend: `127.0.0.1:${backend.port}`, attempts: 1 },
      { status: 429, bytes: limitedBody.length, route, pool: "web", backend: "", attempts: 0 },
    ]);
    expect(limitedBody.length).toBeGreaterThan(0);
  });
});

/** GoAccess's JSON report of `file` read as `format` (COMBINED or COMMON). */
async function goaccess(file: string, format: string, out: string) {
  const proc = Bun.spawn(["goaccess", file, `--log-format=${format}`, "--no-global-config", "-o", out], { stdout: "pipe", stderr: "pipe" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`goaccess exited ${code}: ${await new Response(proc.stderr).text()}`);
  return JSON.parse(readFileSync(out, "utf8")) as {
    general: { total_requests: number; valid_requests: number; failed_requests: number; bandwidth: number };
    status_codes: { data: { data: string; hits: { count: number } }[] };
    requests: { data: { data: string; hits: { count: number } }[] };
  };
}

describe("GoAccess reads what Fulcrum writes", () => {
  for (const format of ["combined", "common"] as const) {
    test(`access_format: ${format} to a file: every request parsed, statuses and bytes as the clients saw them`, async () => {
      const backend = startBackend("b", (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/big") return new Response("x".repeat(5000), { headers: { "content-type": "text/plain" } });
        return new Response(`hello ${path}\n`);
      });
      cleanups.push(() => backend.stop());
      const dir = tempDir("fulcrum-goaccess-");
      const log = join(dir.dir, "access.log");
      const file = dir.write(
        "fulcrum.yaml",
        `listen: 127.0.0.1:0\npools:\n  web:\n    backends: ["${backend.url}"]\nroutes:\n` +
          `  - match: { path: /limited }\n    pool: web\n    middleware: [ { rate-limit: { rate: 1/m, burst: 1 } } ]\n` +
          `  - match: { path: /big }\n    pool: web\n    middleware: [ { compress: {} } ]\n` +
          `  - match: { host: only.example, path: / }\n    pool: web\n` +
          `log: { access_log_file: ${log}, access_format: ${format} }\n`,
      );
      const child = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
      cleanups.push(() => child.stop());
      let bytes = 0;
      const send = async (path: string, init: RequestInit = {}) => {
        const r = await fetch(child.url + path, { decompress: false, ...init } as RequestInit);
        bytes += (await r.arrayBuffer()).byteLength;
        return r.status;
      };
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++)
        statuses.push(await send(`/page/${i}?q=${i}`, { headers: { host: "only.example", referer: "https://ref.example/" } }));
      statuses.push(await send("/limited"), await send("/limited"));
      statuses.push(await send("/big", { headers: { host: "only.example", "accept-encoding": "gzip" } }));
      statuses.push(await send("/nowhere")); // no route: 404
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 200, 404]);
      // Lines reach the file within the writer's 50 ms batching.
      const until = Date.now() + 5_000;
      const lines = () => readFileSync(log, "utf8").split("\n").filter(Boolean);
      while (lines().length < statuses.length && Date.now() < until) await Bun.sleep(10);
      expect(lines().length).toBe(statuses.length);
      if (format === "combined") expect(lines()[0]).toMatch(/"GET \/page\/0\?q=0 HTTP\/1\.1" 200 \d+ "https:\/\/ref\.example\/" "[^"]+"$/);
      else expect(lines()[0]).toMatch(/"GET \/page\/0\?q=0 HTTP\/1\.1" 200 \d+$/);

      const report = await goaccess(log, format.toUpperCase(), join(dir.dir, "report.json"));
      expect(report.general).toMatchObject({ total_requests: statuses.length, valid_requests: statuses.length, failed_requests: 0 });
      // The bytes of every body the clients received, the compressed one and the middleware's 429 included.
      expect(report.general.bandwidth).toBe(bytes);
      const byClass = Object.fromEntries(report.status_codes.data.map((s) => [s.data.slice(0, 3), s.hits.count]));
      expect(byClass).toEqual({ "2xx": 7, "4xx": 2 });
    });
  }
});
