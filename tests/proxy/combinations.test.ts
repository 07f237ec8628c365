// Features that meet on one route: compression with transforms and rate limiting, request ids in
// each access-log format, a sticky pool behind a middleware that refuses, consistent hashing
// behind path rewrites, and a WebSocket through a route whose transforms edit responses. Each
// test is a combination where one feature could break another. Real sockets, real backends.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { parsePrometheus, sum } from "../helpers/prometheus.ts";
import { spawnRun, tempDir } from "../helpers/plugins.ts";
import { testScope } from "../helpers/scope.ts";
import { until, wsScope } from "../helpers/websocket.ts";

const scope = testScope();
const ws = wsScope();
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PAGE = `<html>${"<p>some text that compresses</p>\n".repeat(120)}</html>\n`;

describe("compress with transforms and rate-limit on one route", () => {
  test("the client decodes the backend's body with the id, header and RateLimit fields; the log has the bytes sent; only rate-limit's 429 counts as rate limited", async () => {
    const b = scope.backend("b1", () => new Response(PAGE, { headers: { "content-type": "text/html", etag: '"v1"' } }));
    const f = await scope.fulcrum(`pools:
  web: { backends: ["${b.url}"] }
routes:
  - match: { path: /api }
    pool: web
    middleware:
      - request-id:
      - compress: { encodings: [gzip] }
      - rate-limit: { rate: 2/m, burst: 2 }
      - strip-prefix: /api
      - headers: { response: { set: { x-frame-options: DENY } }, request: { set: { x-id: "\${request_id}" } } }
  - match: { path: /busy }
    pool: web
    middleware:
      - respond: { status: 429, body: "come back later\\n" }
log: { access_log: true }
`);
    const get = (path: string) => fetch(`${f.url}${path}`, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
    const sizes: number[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await get(`/api/page?x=${i}`);
      expect(res.status).toBe(200);
      const body = new Uint8Array(await res.arrayBuffer());
      sizes.push(body.length);
      expect(res.headers.get("content-encoding")).toBe("gzip");
      expect(gunzipSync(body).toString()).toBe(PAGE);
      expect(res.headers.get("vary")).toBe("Accept-Encoding");
      expect(res.headers.get("etag")).toBe('W/"v1"');
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("ratelimit-policy")).toBe('"default";q=2;w=60');
      const id = res.headers.get("x-request-id")!;
      expect(id).toMatch(UUID7);
      // The backend got the stripped path and the same id, by the header and by ${request_id}.
      const seen = b.requests[i]!;
      expect(seen.path).toBe(`/page?x=${i}`);
      expect([seen.headers.get("x-request-id"), seen.headers.get("x-id")]).toEqual([id, id]);
    }
    expect(sizes[0]!).toBeLessThan(PAGE.length / 5);

    const limited = await get("/api/page");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("x-request-id")).toMatch(UUID7); // request-id comes before rate-limit
    expect(limited.headers.get("content-encoding")).toBeNull(); // under min_size
    const limitedBody = await limited.text();
    const busy = await get("/busy");
    expect(busy.status).toBe(429);
    await busy.text();
    expect(b.requests).toHaveLength(2);

    await until(() => f.access().length === 4, 5000, "four access lines");
    const log = f.access();
    expect(log[0]).toMatchObject({ status: 200, bytes: sizes[0], path: "/api/page", upstream_path: "/page?x=0", pool: "web" });
    expect(log[0]!.request_id).toMatch(UUID7);
    expect(log[2]).toMatchObject({ status: 429, bytes: limitedBody.length, pool: "web", attempts: 0 });
    expect(log[3]).toMatchObject({ status: 429, bytes: "come back later\n".length, attempts: 0 });

    const metrics = parsePrometheus(await (await fetch(`${f.adminUrl}/metrics`)).text());
    expect(sum(metrics, "fulcrum_rate_limited_total", { route: "*/api → web" })).toBe(1);
    expect(sum(metrics, "fulcrum_rate_limited_total")).toBe(1); // the respond's 429 is not rate limiting
  });
});

describe("request-id and rewrites in each access-log format", () => {
  for (const format of ["combined", "fields"] as const) {
    test(`${format}: the client's request line or the chosen fields, on the direct path and in a Hono chain`, async () => {
      const b = scope.backend("b1");
      const dir = tempDir("fulcrum-combo-");
      const logFile = join(dir.dir, "access.log");
      const log = format === "combined" ? "access_format: combined" : "fields: [status, path, upstream_path, request_id, pool]";
      const file = dir.write(
        "fulcrum.yaml",
        `listen: 127.0.0.1:0
pools:
  web: { backends: ["${b.url}"] }
routes:
  - match: { path: /direct }
    pool: web
    middleware: [ { request-id: {} }, { strip-prefix: /direct } ]
  - match: { path: /chain }
    pool: web
    middleware: [ { request-id: {} }, { rate-limit: { rate: 100/s } }, { strip-prefix: /chain } ]
log: { access_log_file: ${logFile}, ${log} }
`,
      );
      const child = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
      scope.cleanups.push(() => child.stop());
      const ids: string[] = [];
      for (const path of ["/direct/a?q=1", "/chain/b?q=2"]) {
        const res = await fetch(`${child.url}${path}`, { headers: { "user-agent": "combo/1", referer: "https://r.example/" } });
        expect(res.status).toBe(200);
        await res.text();
        ids.push(res.headers.get("x-request-id")!);
      }
      expect(b.requests.map((r) => r.path)).toEqual(["/a?q=1", "/b?q=2"]);
      const lines = () => readFileSync(logFile, "utf8").split("\n").filter(Boolean);
      await until(() => lines().length === 2, 5000, "two access lines");
      if (format === "combined") {
        // The line GoAccess reads: the client's request as sent, whatever the backend got.
        expect(lines()[0]).toMatch(
          /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/direct\/a\?q=1 HTTP\/1\.1" 200 \d+ "https:\/\/r\.example\/" "combo\/1"$/,
        );
        expect(lines()[1]).toMatch(/"GET \/chain\/b\?q=2 HTTP\/1\.1" 200 \d+ "https:\/\/r\.example\/" "combo\/1"$/);
      } else {
        expect(lines().map((l) => JSON.parse(l))).toEqual([
          { status: 200, path: "/direct/a", upstream_path: "/a?q=1", request_id: ids[0], pool: "web" },
          { status: 200, path: "/chain/b", upstream_path: "/b?q=2", request_id: ids[1], pool: "web" },
        ]);
      }
    });
  }
});

describe("a sticky pool behind a route with middleware", () => {
  test("a 401 from the middleware is logged with its pool and sets no cookie; the client let through gets one and keeps its backend", async () => {
    const bs = scope.backends(3);
    const f = await scope.fulcrum(`pools:
  web:
    sticky: true
    backends: [${bs.map((b) => `"${b.url}"`).join(", ")}]
routes:
  - match: { path: / }
    pool: web
    middleware:
      - plugin: ${new URL("../../plugins/api-key.ts", import.meta.url).pathname}
        options: { keys: [sesame] }
log: { access_log: true }
`);
    const refused = await fetch(f.url);
    expect(refused.status).toBe(401);
    expect(refused.headers.get("set-cookie")).toBeNull();
    const refusedBody = await refused.text();

    const first = await fetch(f.url, { headers: { "x-api-key": "sesame" } });
    await first.text();
    const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
    expect(cookie).toMatch(/^fulcrum_be=[0-9a-f]{16}$/);
    const backend = first.headers.get("x-backend");
    for (let i = 0; i < 5; i++) {
      const r = await fetch(f.url, { headers: { "x-api-key": "sesame", cookie } });
      await r.text();
      expect([r.headers.get("x-backend"), r.headers.get("set-cookie")]).toEqual([backend, null]);
    }
    // Refused with the cookie: still no backend and no cookie rewritten.
    const refusedStuck = await fetch(f.url, { headers: { cookie } });
    expect([refusedStuck.status, refusedStuck.headers.get("set-cookie")]).toEqual([401, null]);
    await refusedStuck.text();

    await until(() => f.access().length === 8, 5000, "eight access lines");
    const log = f.access();
    expect(log[0]).toMatchObject({ status: 401, bytes: refusedBody.length, pool: "web", backend: "", attempts: 0 });
    expect(log[7]).toMatchObject({ status: 401, pool: "web", backend: "" });
  });
});

describe("consistent-hash behind rewrites: the key is read from the request as the client sent it", () => {
  test("query:id through strip-prefix and a rewrite that adds its own id, and cookie:session with the cookie removed for the backend", async () => {
    const bs = scope.backends(3);
    const list = bs.map((b) => `"${b.url}"`).join(", ");
    const f = await scope.fulcrum(`pools:
  byquery:
    strategy: { name: consistent-hash, options: { key: "query:id" } }
    backends: [${list}]
  bycookie:
    strategy: { name: consistent-hash, options: { key: "cookie:session" } }
    backends: [${list}]
routes:
  - match: { path: /api }
    pool: byquery
    middleware:
      - strip-prefix: /api
      - rewrite: { regex: "^/items/(.*)", replace: "/v2/items/$1?id=internal" }
  - match: { path: /items }
    pool: byquery
  - match: { path: /c }
    pool: bycookie
    middleware:
      - headers: { request: { remove: [cookie] } }
`);
    const backendOf = async (path: string, headers: Record<string, string> = {}) => {
      const r = await fetch(`${f.url}${path}`, { headers });
      await r.text();
      return r.headers.get("x-backend");
    };
    const spread = new Set<string | null>();
    for (let k = 0; k < 20; k++) {
      const rewritten = await backendOf(`/api/items/3?id=user-${k}`);
      expect(await backendOf(`/items/3?id=user-${k}`)).toBe(rewritten);
      expect(await backendOf(`/api/items/9?id=user-${k}`)).toBe(rewritten);
      spread.add(rewritten);
    }
    // Keyed by the client's id, not by the rewrite's `id=internal` (which would send all to one).
    expect(spread.size).toBeGreaterThan(1);
    // What the backend got: the rewrite's query, then the client's.
    expect(bs.flatMap((b) => b.requests.map((r) => r.path))).toContain("/v2/items/3?id=internal&id=user-0");

    const bySession = new Set<string | null>();
    for (let k = 0; k < 20; k++) {
      const cookie = `session=s-${k}`;
      const one = await backendOf("/c", { cookie });
      expect(await backendOf("/c/other", { cookie })).toBe(one);
      bySession.add(one);
    }
    expect(bySession.size).toBeGreaterThan(1);
    expect(bs.flatMap((b) => b.requests).filter((r) => r.path.startsWith("/c")).every((r) => r.headers.get("cookie") === null)).toBe(
      true,
    );
  });
});

describe("a WebSocket through a route whose transforms edit responses", () => {
  test("the response hooks skip the 101 in a Hono chain as on the direct path, and run for the plain requests", async () => {
    const b = await ws.backend();
    const dir = tempDir("fulcrum-combo-");
    const plugin = dir.write(
      "status-seen.ts",
      `import type { MiddlewarePlugin } from "fulcrum";
export default {
  kind: "middleware",
  name: "status-seen",
  create: (_o: unknown, api) => ({ response(res) { api.log.info("status seen " + res.status); } }),
} satisfies MiddlewarePlugin;
`,
    );
    for (const chain of ["", "      - rate-limit: { rate: 100/s }\n"]) {
      const f = await scope.fulcrum(`shutdown_timeout: 1s
pools:
  web: { backends: ["${b.url}"] }
routes:
  - match: { path: / }
    pool: web
    middleware:
${chain}      - plugin: ${plugin}
`);
      const client = ws.client(f.url);
      await client.opened;
      client.ws.send("hello");
      expect(String((await client.message(0)).data)).toBe("hello");
      const seen = () => f.records.filter((r) => String(r.message.join("")).startsWith("status seen")).map((r) => r.message.join(""));
      expect(seen()).toEqual([]);
      await (await fetch(f.url)).text();
      await until(() => seen().length === 1, 5000, "the plain request's response hook");
      expect(seen()[0]).toMatch(/^status seen \d{3}$/);
      client.ws.terminate();
    }
  });
});
