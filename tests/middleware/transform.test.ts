// The built-in transforms over real sockets: what the backend received, what the client got, the
// access-log record and the span attributes. Each runs on the direct path (a route whose
// middleware are all transforms) and in a Hono chain (next to a function middleware, here the
// built-in rate-limit; and through gateway.fetch, the web Request path Deno serves with).
import { describe, expect, test } from "bun:test";
import { createRedirect, createRespond } from "../../core/middleware/transform/answer.ts";
import { createHeaders } from "../../core/middleware/transform/headers.ts";
import { createRequestId, uuidv7 } from "../../core/middleware/transform/request-id.ts";
import { createRewrite } from "../../core/middleware/transform/rewrite.ts";
import { createStripPrefix } from "../../core/middleware/transform/strip-prefix.ts";
import { startOtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { startFromFile, tempDir } from "../helpers/plugins.ts";
import { h2connect, h2request } from "../helpers/h2.ts";
import { testScope } from "../helpers/scope.ts";

const { cleanups, backend, fulcrum } = testScope();

/** A backend that answers with headers a response transform can change. */
const echo = () =>
  backend("b1", () => new Response("from backend\n", { headers: { server: "backend/1", "x-backend": "b1", "set-cookie": "a=1" } }));

/**
 * The route's middleware, on the direct path or in a Hono chain: behind a generous rate limit
 * keyed by a plugin, which is a function middleware (keyed by address or header it is a transform).
 */
function config(url: string, middleware: string, chain: "direct" | "hono", extra = ""): string {
  const first = chain === "hono" ? "\n      - rate-limit: { rate: 1000/s, key: { plugin: ./tests/fixtures/tenant-key.ts } }" : "";
  return `pools:
  web: { backends: ["${url}"] }
routes:
  - match: { path: /api }
    pool: web
    middleware:${first}
${middleware.replace(/^/gm, "      ")}
log: { access_log: true }
${extra}`;
}

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

for (const chain of ["direct", "hono"] as const) {
  describe(`transforms (${chain === "direct" ? "direct path" : "in a Hono chain"})`, () => {
    test("strip-prefix then rewrite: the backend sees the new path and the query; the log keeps the client's and records the new one", async () => {
      const b = echo();
      const f = await fulcrum(config(b.url, `- strip-prefix: /api\n- rewrite: { regex: "^/v1/(.*)", replace: "/v2/$1" }`, chain));
      const res = await fetch(`${f.url}/api/v1/users/7?q=1&r=2`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("from backend\n");
      const res2 = await fetch(`${f.url}/api`);
      await res2.text();
      const res3 = await fetch(`${f.url}/api/other`);
      await res3.text();
      expect(b.requests.map((r) => r.path)).toEqual(["/v2/users/7?q=1&r=2", "/", "/other"]);
      const log = f.access();
      expect(log[0]).toMatchObject({ path: "/api/v1/users/7", upstream_path: "/v2/users/7?q=1&r=2", status: 200 });
      expect(log[1]).toMatchObject({ path: "/api", upstream_path: "/" });
      // The rewrite's regex does not match /other: only the prefix went.
      expect(log[2]!.upstream_path).toBe("/other");
    });

    test("headers: request set/add/remove with ${client_ip} ${host} ${request_id}; response set/add/remove", async () => {
      const b = echo();
      const f = await fulcrum(config(
        b.url,
        `- request-id:
- headers:
    request:
      set: { x-real-ip: "\${client_ip}", x-seen-host: "\${host}", x-id: "id=\${request_id}" }
      add: { x-tags: extra }
      remove: [cookie]
    response:
      set: { x-frame-options: DENY }
      add: { set-cookie: "b=2" }
      remove: [server]`,
        chain,
      ));
      const res = await fetch(`${f.url}/api/x`, { headers: { cookie: "secret=1", "x-tags": "client", host: "shop.test:8080" } });
      await res.text();
      const got = b.requests[0]!.headers;
      const id = got.get("x-request-id")!;
      expect(id).toMatch(UUID7);
      expect(got.get("x-real-ip")).toBe("127.0.0.1");
      expect(got.get("x-seen-host")).toBe("shop.test");
      expect(got.get("x-id")).toBe(`id=${id}`);
      expect(got.get("x-tags")).toBe("client, extra");
      expect(got.get("cookie")).toBeNull();
      // The proxy's own headers are still there.
      expect(got.get("x-forwarded-for")).toBe("127.0.0.1");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("server")).toBeNull();
      expect(res.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
      expect(res.headers.get("x-backend")).toBe("b1");
      expect(res.headers.get("x-request-id")).toBe(id);
      expect(f.access()[0]).toMatchObject({ request_id: id, status: 200 });
    });

    test("redirect: Fulcrum answers, the backend is not asked", async () => {
      const b = echo();
      const f = await fulcrum(config(b.url, `- redirect: { to: "https://example.com\${path}\${query}", status: 301 }`, chain));
      const res = await fetch(`${f.url}/api/a?b=1`, { redirect: "manual" });
      expect(res.status).toBe(301);
      expect(res.headers.get("location")).toBe("https://example.com/api/a?b=1");
      expect(b.requests).toHaveLength(0);
      expect(f.access()[0]).toMatchObject({ status: 301, attempts: 0, pool: "web" });
    });

    test("respond: status, body and headers from the config; request-id before it still tags the answer", async () => {
      const b = echo();
      const f = await fulcrum(
        config(b.url, `- request-id:\n- respond: { status: 200, body: "ok from \${method}\\n", headers: { x-answer: yes } }`, chain),
      );
      const res = await fetch(`${f.url}/api/health`, { headers: { "x-request-id": "client-chosen-42" } });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("ok from GET\n");
      expect(res.headers.get("x-answer")).toBe("yes");
      expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
      expect(res.headers.get("x-request-id")).toBe("client-chosen-42");
      expect(b.requests).toHaveLength(0);
      expect(f.access()[0]).toMatchObject({ status: 200, request_id: "client-chosen-42" });
    });

    test("headers the client did not send are added next to its own lines, which reach the backend unchanged", async () => {
      const b = echo();
      const f = await fulcrum(
        config(b.url, `- request-id:\n- headers: { request: { set: { x-real-ip: "\${client_ip}" }, remove: [x-absent] } }`, chain),
      );
      const res = await fetch(`${f.url}/api/plain`, { headers: { "x-client": "c1", cookie: "a=1; b=2" } });
      await res.text();
      const got = b.requests[0]!.headers;
      expect(got.get("x-client")).toBe("c1");
      expect(got.get("cookie")).toBe("a=1; b=2");
      expect(got.get("x-real-ip")).toBe("127.0.0.1");
      expect(got.get("x-request-id")).toMatch(UUID7);
      expect(got.get("x-forwarded-for")).toBe("127.0.0.1");
      expect(res.headers.get("x-request-id")).toBe(got.get("x-request-id"));
    });

    test("request-id: a usable incoming id is kept, an unusable one replaced; trust_incoming: false always makes one", async () => {
      const b = echo();
      const f = await fulcrum(config(b.url, `- request-id: { header: x-correlation-id }`, chain));
      const kept = await fetch(`${f.url}/api/1`, { headers: { "x-correlation-id": "abc-123" } });
      await kept.text();
      const long = await fetch(`${f.url}/api/2`, { headers: { "x-correlation-id": "x".repeat(201) } });
      await long.text();
      expect(b.requests[0]!.headers.get("x-correlation-id")).toBe("abc-123");
      expect(kept.headers.get("x-correlation-id")).toBe("abc-123");
      const made = long.headers.get("x-correlation-id")!;
      expect(made).toMatch(UUID7);
      expect(b.requests[1]!.headers.get("x-correlation-id")).toBe(made);
      expect(f.access().map((a) => a.request_id)).toEqual(["abc-123", made]);

      const g = await fulcrum(config(b.url, `- request-id: { trust_incoming: false }`, chain));
      const res = await fetch(`${g.url}/api/3`, { headers: { "x-request-id": "mine" } });
      await res.text();
      expect(res.headers.get("x-request-id")).toMatch(UUID7);
      expect(b.requests[2]!.headers.get("x-request-id")).toBe(res.headers.get("x-request-id"));
    });
  });
}

describe("transforms around a function middleware that answers", () => {
  test("request-id before rate-limit tags its 429 too; a transform after it does not run for that request", async () => {
    const b = echo();
    const f = await fulcrum(`pools:
  web: { backends: ["${b.url}"] }
routes:
  - match: { path: / }
    pool: web
    middleware:
      - request-id:
      - rate-limit: { rate: 1/m, burst: 1 }
      - headers: { request: { set: { x-after: "1" } }, response: { set: { x-after-seen: "1" } } }
log: { access_log: true }
`);
    const first = await fetch(`${f.url}/a`);
    await first.text();
    const second = await fetch(`${f.url}/a`);
    await second.text();
    expect([first.status, second.status]).toEqual([200, 429]);
    expect(b.requests[0]!.headers.get("x-after")).toBe("1");
    expect(first.headers.get("x-after-seen")).toBe("1");
    expect(second.headers.get("x-request-id")).toMatch(UUID7);
    expect(second.headers.get("x-after-seen")).toBeNull();
    expect(f.access().map((a) => [a.status, typeof a.request_id])).toEqual([[200, "string"], [429, "string"]]);
  });
});

describe("transforms over HTTP/2", () => {
  test("an h2c request gets the same edits: path, request headers, the id back, the log record", async () => {
    const b = echo();
    const f = await fulcrum(`listen: { address: 127.0.0.1:0, h2c: true }
pools:
  web: { backends: ["${b.url}"] }
routes:
  - match: { path: /api, headers: { x-env: canary } }
    pool: web
    middleware:
      - request-id:
      - strip-prefix: /api
      - headers: { request: { set: { x-real-ip: "\${client_ip}" } }, response: { remove: [server] } }
log: { access_log: true }
`);
    const session = await h2connect(f.url);
    cleanups.push(() => session.close());
    const res = await h2request(session, { ":path": "/api/items?n=3", "x-env": "canary" });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("from backend\n");
    expect(b.requests[0]!.path).toBe("/items?n=3");
    expect(b.requests[0]!.headers.get("x-real-ip")).toBe("127.0.0.1");
    const id = b.requests[0]!.headers.get("x-request-id")!;
    expect(id).toMatch(UUID7);
    expect(res.headers["x-request-id"]).toBe(id);
    expect(res.headers.server).toBeUndefined();
    expect(f.access()[0]).toMatchObject({ protocol: "2", path: "/api/items", upstream_path: "/items?n=3", request_id: id });
  });
});

describe("transforms through gateway.fetch (the web Request path)", () => {
  test("rewrite, request headers and request-id reach the backend; the response carries the id", async () => {
    const b = echo();
    const f = await fulcrum(
      config(b.url, `- request-id:\n- strip-prefix: /api\n- headers: { request: { set: { x-h: "\${host}" } } }`, "direct"),
    );
    const res = await f.server.gateway.fetch(new Request(`${f.url}/api/p?x=1`), "192.0.2.7");
    expect(res.status).toBe(200);
    await res.text();
    expect(b.requests[0]!.path).toBe("/p?x=1");
    expect(b.requests[0]!.headers.get("x-h")).toBe("127.0.0.1");
    expect(res.headers.get("x-request-id")).toBe(b.requests[0]!.headers.get("x-request-id"));
    expect(f.access()[0]).toMatchObject({ path: "/api/p", upstream_path: "/p?x=1", client_ip: "192.0.2.7" });
  });
});

describe("a user plugin's transform", () => {
  test("runs on the direct path like a built-in; a throw answers 500 for that request only, logged with the plugin's name", async () => {
    const b = echo();
    const t = tempDir();
    t.write(
      "tenant.ts",
      `import type { MiddlewarePlugin } from "fulcrum";
export default {
  kind: "middleware",
  name: "tenant",
  create: (options: { tenant: string }) => ({
    request(req) {
      if (req.header("x-boom") !== undefined) throw new Error("boom");
      req.setHeader("x-tenant", options.tenant);
    },
    response(res) {
      res.setHeader("x-tenant-seen", options.tenant);
    },
  }),
} satisfies MiddlewarePlugin<{ tenant: string }>;
`,
    );
    const file = t.write(
      "fulcrum.yaml",
      `pools:\n  web: { backends: ["${b.url}"] }\nroutes:\n  - match: { path: / }\n    pool: web\n    middleware:\n      - { plugin: ./tenant.ts, options: { tenant: t1 } }\n`,
    );
    const f = await startFromFile(file);
    cleanups.push(() => f.stop());
    const ok = await fetch(`${f.url}/x`);
    await ok.text();
    expect(ok.headers.get("x-tenant-seen")).toBe("t1");
    expect(b.requests[0]!.headers.get("x-tenant")).toBe("t1");
    const boom = await fetch(`${f.url}/x`, { headers: { "x-boom": "1" } });
    expect(boom.status).toBe(500);
    await boom.text();
    expect(b.requests).toHaveLength(1);
    expect(f.logged("plugin failed")[0]!.properties).toMatchObject({ plugin: "tenant", what: "request() threw", error: "boom" });
    const again = await fetch(`${f.url}/y`);
    await again.text();
    expect(again.status).toBe(200);
  });
});

describe("transforms in spans", () => {
  test("the SERVER span keeps the client's path and records fulcrum.upstream.path and fulcrum.request_id; the CLIENT span's url.full is what was sent", async () => {
    const r = await startOtlpReceiver();
    cleanups.push(() => r.stop());
    const b = echo();
    const f = await fulcrum(config(
      b.url,
      `- request-id:\n- rewrite: { regex: "^/api/(.*)", replace: "/internal/$1" }`,
      "direct",
      `telemetry:\n  traces: { endpoint: "${r.url}", protocol: http/json, scheduled_delay: 20ms }\n`,
    ));
    const res = await fetch(`${f.url}/api/items?page=2`);
    await res.text();
    const id = res.headers.get("x-request-id")!;
    const spans = await r.waitForSpans(2);
    const server = spans.find((s: ReceivedSpan) => s.kind === "SERVER")!;
    const client = spans.find((s: ReceivedSpan) => s.kind === "CLIENT")!;
    expect(server.attributes).toMatchObject({
      "url.path": "/api/items",
      "url.query": "page=2",
      "fulcrum.upstream.path": "/internal/items?page=2",
      "fulcrum.request_id": id,
    });
    expect(client.attributes["url.full"]).toBe(`${b.url}/internal/items?page=2`);
    expect(b.requests[0]!.path).toBe("/internal/items?page=2");
  });
});

describe("options are checked when the route is built", () => {
  const bad: [string, () => unknown, string][] = [
    ["strip-prefix without a leading /", () => createStripPrefix("api"), "strip-prefix must be a path prefix such as /api"],
    ["rewrite with a broken regex", () => createRewrite({ regex: "(", replace: "/" }), "regex is not a valid regular expression"],
    ["rewrite with a space in replace", () => createRewrite({ regex: "a", replace: "/a b" }), "replace may not contain spaces"],
    ["headers with an unknown variable", () => createHeaders({ request: { set: { x: "${nope}" } } }), "unknown variable ${nope}"],
    [
      "headers setting a framing header",
      () => createHeaders({ request: { set: { "transfer-encoding": "x" } } }),
      "transfer-encoding is set by the proxy",
    ],
    ["headers with nothing to do", () => createHeaders({}), "headers needs request and/or response"],
    [
      "redirect with a non-redirect status",
      () => createRedirect({ to: "/x", status: 200 }),
      "status must be one of 301, 302, 303, 307, 308",
    ],
    ["respond with status 99", () => createRespond({ status: 99 }), "status must be an HTTP status from 200 to 599"],
    ["request-id with an unknown option", () => createRequestId({ heder: "x" } as never), 'unknown option "heder"'],
  ];
  for (const [what, make, message] of bad) {
    test(what, () => expect(make).toThrow(message));
  }

  test("a bad option is a config problem with its place, before anything listens", async () => {
    const b = echo();
    await expect(fulcrum(config(b.url, `- redirect: { to: /x, status: 200 }`, "direct"))).rejects.toThrow(
      "routes[0].middleware[0]: redirect: create() failed: status must be one of 301, 302, 303, 307, 308, got 200",
    );
  });
});

test("uuidv7: version 7, RFC 9562 variant, the millisecond time in the first 48 bits, unique", () => {
  const t = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  const ids = Array.from({ length: 600 }, () => uuidv7(t));
  for (const id of ids) expect(id).toMatch(UUID7);
  expect(parseInt(ids[0]!.replace(/-/g, "").slice(0, 12), 16)).toBe(t);
  expect(new Set(ids).size).toBe(600);
});
