import { describe, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import type { TestBackend } from "../helpers/backends.ts";
import { stickyValue } from "../../core/pool/sticky.ts";
import { parseConfig } from "../../core/config/load.ts";

const scope = testScope();

const pool = (bs: TestBackend[], sticky: string) =>
  `pools:
  web:
    strategy: round-robin
    sticky: ${sticky}
    backends:
${bs.map((b) => `      - ${b.url}`).join("\n")}
`;
// The direct path (no middleware) and the Hono path (a route with middleware) both set the cookie.
const ROUTES = {
  direct: "",
  middleware: `routes:
  - match: { path: / }
    pool: web
    middleware:
      - rate-limit: { rate: 100000/s }
`,
};

/** The sticky cookie's value in a Set-Cookie header, or undefined. */
const cookieOf = (r: Response) => /^fulcrum_be=([^;]*)/.exec(r.headers.get("set-cookie") ?? "")?.[1];

async function get(url: string, cookie?: string): Promise<{ status: number; backend: string | null; setCookie: string | null }> {
  const r = await fetch(url, { headers: cookie === undefined ? {} : { cookie } });
  await r.arrayBuffer();
  return { status: r.status, backend: r.headers.get("x-backend"), setCookie: r.headers.get("set-cookie") };
}

describe.each(Object.entries(ROUTES))("sticky cookies (%s path)", (_path, routes) => {
  test("a cookie-less client gets a cookie and stays on its backend for 100 requests", async () => {
    const bs = scope.backends(3);
    const f = await scope.fulcrum(pool(bs, "{ cookie: fulcrum_be, ttl: 1h, secure: true, http_only: true, same_site: lax }") + routes);
    const first = await fetch(f.url);
    await first.arrayBuffer();
    const backend = first.headers.get("x-backend")!;
    const set = first.headers.get("set-cookie")!;
    expect(set).toMatch(/^fulcrum_be=[0-9a-f]{16}; Path=\/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax$/);
    // Opaque: the value is a hash of the pool and the backend's id, not its address.
    const b = bs.find((x) => x.name === backend)!;
    expect(set).not.toContain(String(b.port));
    expect(cookieOf(first)).toBe(stickyValue("", "web", `127.0.0.1:${b.port}`));
    const cookie = `other=1; fulcrum_be=${cookieOf(first)}`;
    for (let i = 0; i < 100; i++) {
      const r = await get(f.url, cookie);
      expect(r).toEqual({ status: 200, backend, setCookie: null });
    }
    // Without the cookie, round robin carries on over all three.
    const others = new Set<string | null>();
    for (let i = 0; i < 6; i++) others.add((await get(f.url)).backend);
    expect(others.size).toBe(3);
  });

  test("its backend killed: the next request succeeds elsewhere and the cookie changes", async () => {
    const bs = scope.backends(3);
    const f = await scope.fulcrum(pool(bs, "true") + routes);
    const first = await fetch(f.url);
    await first.arrayBuffer();
    const was = first.headers.get("x-backend")!;
    const cookie = `fulcrum_be=${cookieOf(first)}`;
    await bs.find((b) => b.name === was)!.stop();
    const r = await fetch(f.url, { headers: { cookie } });
    await r.arrayBuffer();
    expect(r.status).toBe(200);
    const now = r.headers.get("x-backend")!;
    expect(now).not.toBe(was);
    const changed = cookieOf(r)!;
    expect(changed).toMatch(/^[0-9a-f]{16}$/);
    expect(`fulcrum_be=${changed}`).not.toBe(cookie);
    // The new cookie holds the client on the new backend.
    for (let i = 0; i < 10; i++) expect((await get(f.url, `fulcrum_be=${changed}`)).backend).toBe(now);
  });

  test("a forged or unknown cookie is ignored: the strategy picks and the cookie is rewritten", async () => {
    const bs = scope.backends(3);
    const f = await scope.fulcrum(pool(bs, "true") + routes);
    const seen = new Set<string | null>();
    for (const forged of ["0123456789abcdef", `127.0.0.1:${bs[0]!.port}`, "", stickyValue("", "other-pool", `127.0.0.1:${bs[0]!.port}`)]) {
      for (let i = 0; i < 3; i++) {
        const r = await fetch(f.url, { headers: { cookie: `fulcrum_be=${forged}` } });
        await r.arrayBuffer();
        expect(r.status).toBe(200);
        seen.add(r.headers.get("x-backend"));
        const set = cookieOf(r)!;
        expect(set).not.toBe(forged);
        const id = `127.0.0.1:${bs.find((b) => b.name === r.headers.get("x-backend"))!.port}`;
        expect(set).toBe(stickyValue("", "web", id));
      }
    }
    // Round robin went on as if no cookie had been sent.
    expect(seen.size).toBe(3);
  });
});

describe("sticky cookies across instances", () => {
  test("two instances with the same config send one cookie to the same backend; a secret changes every value", async () => {
    const bs = scope.backends(4);
    const a = await scope.fulcrum(pool(bs, "true"));
    const b = await scope.fulcrum(pool(bs, "true"));
    for (let i = 0; i < 4; i++) {
      const r = await fetch(a.url);
      await r.arrayBuffer();
      const cookie = `fulcrum_be=${cookieOf(r)}`;
      // The other instance (own process state, own round-robin position) agrees.
      for (let j = 0; j < 3; j++) expect((await get(b.url, cookie)).backend).toBe(r.headers.get("x-backend"));
    }
    const secret = await scope.fulcrum(pool(bs, "{ secret: s3cret }"));
    const r = await fetch(secret.url);
    await r.arrayBuffer();
    const id = `127.0.0.1:${bs.find((x) => x.name === r.headers.get("x-backend"))!.port}`;
    expect(cookieOf(r)).toBe(stickyValue("s3cret", "web", id));
    expect(cookieOf(r)).not.toBe(stickyValue("", "web", id));
  });
});

describe("sticky config", () => {
  const parse = (sticky: string) =>
    parseConfig(`pools:\n  web:\n    sticky: ${sticky}\n    backends: [http://127.0.0.1:9001]\n`, {
      file: "f.yaml",
      env: () => undefined,
      strategyNames: ["round-robin"],
    });

  test("true takes the defaults: fulcrum_be, a session cookie, HttpOnly, SameSite=Lax, not Secure", () => {
    expect(parse("true").pools.web!.sticky).toEqual({
      cookie: "fulcrum_be",
      ttl: 0,
      secure: false,
      http_only: true,
      same_site: "lax",
      path: "/",
    });
  });

  test("bad values are refused with file:line:col", () => {
    expect(() => parse("{ cookie: 'a b' }")).toThrow(/f\.yaml:3:\d+: pools\.web\.sticky\.cookie must be a cookie name/);
    expect(() => parse("{ same_site: none }")).toThrow(/same_site: none needs secure: true/);
    expect(() => parse("{ ttl: forever }")).toThrow(/pools\.web\.sticky\.ttl must be a duration/);
    expect(() => parse("{ cokie: x }")).toThrow(/pools\.web\.sticky/);
  });
});
