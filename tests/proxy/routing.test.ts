// Route selection: every condition of a route must hold, and among the routes that match the most
// specific wins (docs/routing.md). The table is checked twice: against the matcher itself, and
// end to end over a real socket, each route answering with its own name (the `respond` built-in).
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../core/config/load.ts";
import { byPrecedence, compileMatch, matchRoute, unreachableRoutes } from "../../core/proxy/route-match.ts";
import { builtinRegistry } from "../../main.ts";
import { testScope } from "../helpers/scope.ts";

const { backend, fulcrum } = testScope();

/** Routes written in the config's own YAML, in config order; each is named by its `id`. */
const ROUTES = [
  { id: "any", match: "{ path: / }" },
  { id: "api", match: "{ path: /api }" },
  { id: "api-v", match: "{ path: /api/v1 }" },
  { id: "api-regex", match: '{ path: /api, path_regex: "^/api/[0-9]+$" }' },
  { id: "api-get", match: "{ path: /api, methods: [GET, HEAD] }" },
  { id: "api-canary", match: "{ path: /api, headers: { x-env: canary } }" },
  { id: "api-canary-re", match: '{ path: /api, headers: { x-env: "/^canary-[a-z]+$/" } }' },
  { id: "api-get-canary", match: "{ path: /api, methods: [GET], headers: { x-env: canary } }" },
  { id: "api-q", match: '{ path: /api, query: { v: "2" } }' },
  { id: "api-hdr-q", match: '{ path: /api, headers: { x-env: canary }, query: { v: "2" } }' },
  { id: "host-any", match: "{ host: api.example.com }" },
  { id: "host-get", match: "{ host: api.example.com, methods: [GET] }" },
  { id: "wild", match: '{ host: "*.example.com" }' },
  { id: "wild-deeper", match: '{ host: "*.eu.example.com" }' },
  { id: "wild-api", match: '{ host: "*.example.com", path: /api }' },
];

/** [method, host, path and query, headers, the route that must win, why] */
const CASES: [string, string, string, Record<string, string>, string, string][] = [
  ["POST", "other.test", "/", {}, "any", "nothing more specific matches"],
  ["POST", "other.test", "/apix", {}, "any", "a prefix matches whole segments only"],
  ["POST", "other.test", "/api/x", {}, "api", "the longer prefix wins"],
  ["POST", "other.test", "/api/v1/x", {}, "api-v", "the longest prefix wins over every condition on a shorter one"],
  ["POST", "other.test", "/api/42", {}, "api-regex", "same prefix: a path_regex beats methods, headers, query"],
  ["GET", "other.test", "/api/42", { "x-env": "canary" }, "api-regex", "…even when they would match too"],
  ["POST", "other.test", "/api/42x", {}, "api", "a regex that does not match is skipped"],
  ["GET", "other.test", "/api/x", {}, "api-get", "same prefix, no regex: methods beat none"],
  ["HEAD", "other.test", "/api/x", {}, "api-get", "any method of the list"],
  ["GET", "other.test", "/api/x", { "x-env": "canary" }, "api-get-canary", "methods and a header beat methods alone"],
  ["HEAD", "other.test", "/api/x", { "x-env": "canary" }, "api-get", "HEAD: a route naming it beats one that has it through GET"],
  ["HEAD", "api.example.com", "/", {}, "host-get", "GET lets HEAD in: methods [GET] matches HEAD too"],
  ["DELETE", "api.example.com", "/", {}, "host-any", "…and no other method"],
  ["POST", "other.test", "/api/x", { "x-env": "canary" }, "api-canary", "a header condition beats none (first in config among equals)"],
  ["POST", "other.test", "/api/x", { "x-env": "canary-eu" }, "api-canary-re", "a /regex/ header value"],
  ["POST", "other.test", "/api/x", { "x-env": "prod" }, "api", "a header that does not match is skipped"],
  ["POST", "other.test", "/api/x?v=2", {}, "api-q", "a query condition"],
  ["POST", "other.test", "/api/x?v=22", {}, "api", "query values match exactly"],
  ["POST", "other.test", "/api/x?v=2", { "x-env": "canary" }, "api-hdr-q", "a header and a query beat a header alone"],
  ["POST", "api.example.com", "/api/x", {}, "host-any", "an exact host beats any path of a wildcard or no host"],
  ["GET", "api.example.com:8080", "/", {}, "host-get", "the port is ignored; methods on the exact host"],
  ["POST", "www.example.com", "/", {}, "wild", "a wildcard host"],
  ["POST", "www.example.com", "/api/x", {}, "wild-api", "wildcard host, then the longer path"],
  ["POST", "a.eu.example.com", "/api/x", {}, "wild-deeper", "the longer wildcard suffix wins before the path"],
  ["POST", "example.com", "/", {}, "any", "*.example.com does not match example.com itself"],
];

function yaml(backendUrl: string): string {
  return `pools:
  web: { backends: ["${backendUrl}"] }
routes:
${ROUTES.map((r) => `  - match: ${r.match}\n    pool: web\n    middleware: [ { respond: { body: "${r.id}" } } ]`).join("\n")}
`;
}

function parse(text: string) {
  const registry = builtinRegistry();
  return parseConfig(text, {
    file: "routes.yaml",
    env: () => undefined,
    strategyNames: registry.strategyNames(),
    middlewareNames: registry.middlewareNames(),
  });
}

describe("route precedence", () => {
  test("the matcher picks the documented winner for every case in the table", () => {
    const config = parse(yaml("http://127.0.0.1:1"));
    const routes = config.routes!.map((r, i) => ({ ...compileMatch(r.match, i), id: ROUTES[i]!.id })).sort(byPrecedence);
    for (const [method, host, target, headers, want, why] of CASES) {
      const q = target.indexOf("?");
      const path = q < 0 ? target : target.slice(0, q);
      const got = matchRoute(routes, host, path, { method, header: (n) => headers[n] ?? null }, q < 0 ? "" : target.slice(q + 1));
      expect({ case: `${method} ${host}${target} ${JSON.stringify(headers)}: ${why}`, route: got?.id }).toEqual({
        case: `${method} ${host}${target} ${JSON.stringify(headers)}: ${why}`,
        route: want,
      });
    }
  });

  test("the config order only breaks ties: the table gives the same winners with the routes reversed", () => {
    const reversed = `pools:\n  web: { backends: ["http://127.0.0.1:1"] }\nroutes:\n${
      [...ROUTES].reverse().map((r) => `  - match: ${r.match}\n    pool: web`).join("\n")
    }\n`;
    const ids = [...ROUTES].reverse().map((r) => r.id);
    const routes = parse(reversed).routes!.map((r, i) => ({ ...compileMatch(r.match, i), id: ids[i]! })).sort(byPrecedence);
    for (const [method, host, target, headers, want] of CASES) {
      const q = target.indexOf("?");
      const got = matchRoute(
        routes,
        host,
        q < 0 ? target : target.slice(0, q),
        { method, header: (n) => headers[n] ?? null },
        q < 0 ? "" : target.slice(q + 1),
      );
      expect(`${method} ${host}${target} → ${got?.id}`).toBe(`${method} ${host}${target} → ${want}`);
    }
  });

  test("over a real socket the same table holds: each route answers with its name", async () => {
    const b = backend("b1");
    const f = await fulcrum(yaml(b.url));
    for (const [method, host, target, headers, want, why] of CASES) {
      const res = await fetch(`${f.url}${target}`, { method, headers: { ...headers, host } });
      const body = method === "HEAD" ? want : await res.text();
      expect(`${method} ${host}${target}: ${why} → ${res.status} ${body}`).toBe(`${method} ${host}${target}: ${why} → 200 ${want}`);
    }
    // No route proxied: every answer came from a route's own middleware.
    expect(b.requests).toHaveLength(0);
    // The access log names the route with its conditions.
    expect(f.access().map((a) => a.route)).toContain("*/api GET,HEAD → web");
  });

  test("a tie is broken by config order: of two routes equal in every step, the first written wins", () => {
    const text = (order: string[]) =>
      `pools:\n  web: { backends: ["http://127.0.0.1:1"] }\nroutes:\n${
        order.map((h) => `  - { match: { path: /api, headers: { ${h}: "1" } }, pool: web }`).join("\n")
      }\n`;
    for (const order of [["x-a", "x-b"], ["x-b", "x-a"]]) {
      const routes = parse(text(order)).routes!.map((r, i) => ({ ...compileMatch(r.match, i), id: order[i]! })).sort(byPrecedence);
      const got = matchRoute(routes, "h", "/api", { method: "GET", header: () => "1" }, "");
      expect(got?.id).toBe(order[0]);
    }
  });

  test("a request no route matches gets 404", async () => {
    const b = backend("b1");
    const f = await fulcrum(`pools:
  web: { backends: ["${b.url}"] }
routes:
  - match: { path: /api, methods: [GET] }
    pool: web
`);
    expect((await fetch(`${f.url}/api`, { method: "DELETE" })).status).toBe(404);
    expect((await fetch(`${f.url}/api`)).status).toBe(200);
    expect(b.requests.map((r) => r.method)).toEqual(["GET"]);
  });
});

describe("routes that can never match", () => {
  const unreachable = (routes: string) =>
    unreachableRoutes(
      parse(`pools:\n  web: { backends: ["http://127.0.0.1:1"] }\nroutes:\n${routes}`).routes!.map((r, i) => compileMatch(r.match, i)),
    );

  test("fulcrum run logs each one when the routes are built", async () => {
    const b = backend("b1");
    const f = await fulcrum(`pools:
  web: { backends: ["${b.url}"] }
routes:
  - { match: { path: /a }, pool: web }
  - { match: { path: /a/b, methods: [] }, pool: web }
`);
    const warned = f.records.filter((r) => r.message.join("") === "route can never match").map((r) => r.properties);
    expect(warned).toEqual([{ route: "routes[1] */a/b (no methods)", why: "match.methods is empty, so no request matches it" }]);
  });

  test("an empty methods list", () => {
    expect(unreachable("  - { match: { path: /a, methods: [] }, pool: web }\n")).toEqual([[
      0,
      "match.methods is empty, so no request matches it",
    ]]);
  });

  test("a path_regex whose anchored start is outside the path prefix", () => {
    const found = unreachable('  - { match: { path: /api, path_regex: "^/v1/(.*)" }, pool: web }\n');
    expect(found).toEqual([[0, "match.path_regex /^\\/v1\\/(.*)/ only matches paths starting with /v1/, never under /api"]]);
    // Inside the prefix, or unanchored: fine.
    expect(unreachable('  - { match: { path: /api, path_regex: "^/api/v[0-9]+" }, pool: web }\n')).toEqual([]);
    expect(unreachable('  - { match: { path: /api, path_regex: "\\\\.json$" }, pool: web }\n')).toEqual([]);
  });

  test("a route every request of which a route of higher or equal precedence takes first", () => {
    const found = unreachable(`  - { match: { path: /api }, pool: web }
  - { match: { path: /api }, pool: web }
  - { match: { path: /api, methods: [GET, POST] }, pool: web }
  - { match: { path: /api, methods: [GET] }, pool: web }
  - { match: { host: "*.example.com", path: /x }, pool: web }
  - { match: { host: "*.eu.example.com", path: /x }, pool: web }
  - { match: { path: /x/y, path_regex: "^/x/y/[0-9]+$" }, pool: web }
  - { match: { path: /x/y, path_regex: "^/x/y/[0-9]+$" }, pool: web }
  - { match: { path: /x/y, path_regex: "^/x/y/[0-9]+$", headers: { x-env: canary } }, pool: web }
`);
    // 1: the same as 0, later. 3: GET is among 2's methods and 2 comes first (config order).
    // 5: a longer wildcard suffix ranks first. 7: the same as 6. 8: more conditions rank first.
    expect(found).toEqual([
      [1, "routes[0] comes first (docs/routing.md) and takes every request this route matches"],
      [3, "routes[2] comes first (docs/routing.md) and takes every request this route matches"],
      [7, "routes[6] comes first (docs/routing.md) and takes every request this route matches"],
    ]);
  });
});
