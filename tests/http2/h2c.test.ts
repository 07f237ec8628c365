// HTTP/2 with prior knowledge (h2c) on a plain listener, next to HTTP/1.1: the same routes, retries,
// access log and spans as HTTP/1.1; clients are curl, nghttp, h2load and node:http2, on loopback.
import { describe, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import { h2connect, h2loadSummary, h2request, nghttp2Tools, run } from "../helpers/h2.ts";
import { startOtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { until, wsScope } from "../helpers/websocket.ts";

const tools = nghttp2Tools();
const ws = wsScope();
const scope = testScope();

const echo = async (req: Request, name: string) =>
  new Response(
    JSON.stringify({
      name,
      method: req.method,
      path: new URL(req.url).pathname + new URL(req.url).search,
      host: req.headers.get("host"),
      cookie: req.headers.get("cookie"),
      te: req.headers.get("te"),
      xff: req.headers.get("x-forwarded-for"),
      body: req.body ? await req.text() : null,
    }),
    { headers: { "content-type": "application/json", "set-cookie": "a=1", "x-backend": name } },
  );

describe("HTTP/2 with prior knowledge (h2c: true)", () => {
  test("curl --http2-prior-knowledge is routed by host and path like HTTP/1.1, on the same port", async () => {
    const api = scope.backend("api", echo);
    const web = scope.backend("web", echo);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools:
  api: { backends: ["${api.url}"] }
  web: { backends: ["${web.url}"] }
routes:
  - { match: { host: api.example.com, path: /v1 }, pool: api }
  - { match: { path: / }, pool: web }
`);
    const curl = (args: string[]) => run(["curl", "-s", "--http2-prior-knowledge", "-D", "-", ...args]);
    const a = await curl(["-H", "host: api.example.com", `${f.url}/v1/users?x=1`]);
    expect(a.stdout).toStartWith("HTTP/2 200");
    const body = JSON.parse(a.stdout.slice(a.stdout.indexOf("\r\n\r\n") + 4));
    expect(body).toMatchObject({ name: "api", method: "GET", path: "/v1/users?x=1", host: "api.example.com", xff: "127.0.0.1" });
    const w = await curl(["-H", "cookie: a=1", "-H", "cookie: b=2", "-d", "posted", `${f.url}/other`]);
    const wb = JSON.parse(w.stdout.slice(w.stdout.indexOf("\r\n\r\n") + 4));
    // Cookies split by HTTP/2 reach the HTTP/1.1 backend joined with "; "; the body is forwarded.
    expect(wb).toMatchObject({ name: "web", method: "POST", cookie: "a=1; b=2", body: "posted" });
    expect(w.stdout.toLowerCase()).toContain("set-cookie: a=1");
    // The same port still speaks HTTP/1.1.
    const h1 = await run(["curl", "-s", "-D", "-", `${f.url}/h1`]);
    expect(h1.stdout).toStartWith("HTTP/1.1 200");
    const lines = f.access();
    expect(lines.map((l) => l.protocol)).toEqual(["2", "2", undefined]);
    expect(lines[0]).toMatchObject({ method: "GET", path: "/v1/users", status: 200, pool: "api", attempts: 1 });
  });

  test("route middleware runs as over HTTP/1.1: rate limiting answers 429 with its headers", async () => {
    const b = scope.backend("b", echo);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
routes:
  - match: { path: / }
    pool: web
    middleware:
      - rate-limit: { rate: 2/m, burst: 2 }
`);
    const s = await h2connect(f.url);
    scope.cleanups.push(() => s.close());
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof h2request>> | undefined;
    for (let i = 0; i < 3; i++) {
      const a = await h2request(s, { ":path": `/r${i}` });
      statuses.push(a.status);
      if (a.status === 429) limited = a;
    }
    expect(statuses).toEqual([200, 200, 429]);
    expect(limited!.headers["retry-after"]).toBeDefined();
    expect(limited!.headers["ratelimit-policy"]).toBeDefined();
    expect(b.requests).toHaveLength(2);
    expect(f.access().map((l) => [l.status, l.protocol])).toEqual([[200, "2"], [200, "2"], [429, "2"]]);
  });

  test.skipIf(!tools)("nghttp: several streams on one connection, headers and bodies intact", async () => {
    const b = scope.backend("b", echo);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
`);
    const r = await run(["nghttp", "-n", "-s", `${f.url}/a`, `${f.url}/b`, `${f.url}/c`]);
    expect(r.code).toBe(0);
    const s = await h2connect(f.url);
    scope.cleanups.push(() => s.close());
    const answers = await Promise.all(["/1", "/2", "/3"].map((p) => h2request(s, { ":path": p, te: "trailers" })));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(answers.map((a) => JSON.parse(String(a.body)).path)).toEqual(["/1", "/2", "/3"]);
    // TE is hop-by-hop: "trailers" is allowed from an HTTP/2 client, and not forwarded.
    expect(JSON.parse(String(answers[0]!.body)).te).toBeNull();
    expect(answers[0]!.headers["x-backend"]).toBe("b");
    expect(f.access().filter((l) => l.protocol === "2").length).toBeGreaterThanOrEqual(6);
  });

  test("a failed attempt is retried on another backend, as over HTTP/1.1", async () => {
    let first = true;
    const flaky = (req: Request, name: string) => {
      if (first) {
        first = false;
        return new Response("busy\n", { status: 503 });
      }
      return echo(req, name);
    };
    const b1 = scope.backend("b1", flaky);
    const b2 = scope.backend("b2", flaky);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b1.url}", "${b2.url}"] } }
`);
    const s = await h2connect(f.url);
    scope.cleanups.push(() => s.close());
    const a = await h2request(s, { ":path": "/retry" });
    expect(a.status).toBe(200);
    expect(f.access()[0]).toMatchObject({ status: 200, attempts: 2, retry_reason: "503", protocol: "2" });
  });

  test("a trace has an HTTP/2 SERVER span (network.protocol.version 2) and a CLIENT span per attempt", async () => {
    const r = await startOtlpReceiver();
    scope.cleanups.push(() => r.stop());
    const b = scope.backend("b", echo);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
telemetry: { traces: { endpoint: "${r.url}", protocol: http/json, scheduled_delay: 20ms } }
`);
    const s = await h2connect(f.url);
    scope.cleanups.push(() => s.close());
    const a = await h2request(s, { ":path": "/traced", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
    expect(a.status).toBe(200);
    const spans = await r.waitForSpans(2);
    const server = spans.find((x: ReceivedSpan) => x.kind === "SERVER")!;
    const client = spans.find((x: ReceivedSpan) => x.kind === "CLIENT")!;
    expect(server.traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(server.attributes).toMatchObject({ "network.protocol.version": "2", "http.request.method": "GET", "url.path": "/traced" });
    expect(client.parentSpanId).toBe(server.spanId);
    expect(f.access()[0]!.trace_id).toBe("0af7651916cd43dd8448eb211c80319c");
  });

  test.skipIf(!tools)("200 concurrent streams on one connection are all answered", async () => {
    let open = 0;
    let peak = 0;
    const slow = async (req: Request, name: string) => {
      peak = Math.max(peak, ++open);
      await new Promise((r) => setTimeout(r, 200));
      open--;
      return echo(req, name);
    };
    const b = scope.backend("b", slow);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true, http2: { max_concurrent_streams: 256 } }
pools: { web: { backends: ["${b.url}"], keepalive: { max_idle: 256 } } }
log: { access_log: false }
`);
    const r = await run(["h2load", "-n", "200", "-c", "1", "-m", "200", `${f.url}/`]);
    expect(h2loadSummary(r.stdout)).toMatchObject({ done: 200, succeeded: 200, ok: 200 });
    expect(peak).toBe(200);
    // With the default of 100, the client queues the rest: still all answered.
    const g = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
log: { access_log: false }
`);
    peak = 0;
    const q = await run(["h2load", "-n", "200", "-c", "1", "-m", "200", `${g.url}/`]);
    expect(h2loadSummary(q.stdout)).toMatchObject({ done: 200, ok: 200 });
    expect(peak).toBeLessThanOrEqual(100);
  });

  test("limits as over HTTP/1.1: a header list over max_header_list_size gets 431, a body over max_request_body 413", async () => {
    const b = scope.backend("b", echo);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true, http2: { max_header_list_size: 4kib } }
limits: { max_request_body: 1kb }
pools: { web: { backends: ["${b.url}"] } }
`);
    const s = await h2connect(f.url, { maxHeaderListSize: 1 << 20 });
    scope.cleanups.push(() => s.close());
    const big = await h2request(s, { ":path": "/", "x-big": "v".repeat(6000) }).catch((e) => ({ status: -1, error: e }));
    // The session refuses a header list over its advertised limit; either way the backend never sees it.
    expect([431, -1]).toContain(big.status);
    const s2 = await h2connect(f.url);
    scope.cleanups.push(() => s2.close());
    const post = await h2request(s2, { ":method": "POST", ":path": "/up", "content-length": "4096" }, Buffer.alloc(4096));
    expect(post.status).toBe(413);
    // Without a declared length, the body is counted as it comes: 413 all the same.
    const streamed = await h2request(s2, { ":method": "POST", ":path": "/streamed" }, Buffer.alloc(4096));
    expect(streamed.status).toBe(413);
    const ok = await h2request(s2, { ":method": "POST", ":path": "/up" }, "small");
    expect(ok.status).toBe(200);
    expect(b.requests.map((r) => r.path).filter((p) => p === "/up")).toEqual(["/up"]);
  });

  test("a connection with no stream open past client_idle_timeout is closed with GOAWAY", async () => {
    const b = scope.backend("b", echo);
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
limits: { client_idle_timeout: 1s }
pools: { web: { backends: ["${b.url}"] } }
`);
    const s = await h2connect(f.url);
    let goaway = false;
    s.on("goaway", () => (goaway = true));
    const closed = new Promise<void>((r) => s.once("close", () => r()));
    expect((await h2request(s, { ":path": "/" })).status).toBe(200);
    await closed;
    expect(goaway).toBe(true);
  });

  test("graceful shutdown: GOAWAY, the stream in flight is answered", async () => {
    const b = scope.backend("b", async (req, name) => {
      await new Promise((r) => setTimeout(r, 300));
      return echo(req, name);
    });
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
`);
    const s = await h2connect(f.url);
    scope.cleanups.push(() => s.close());
    let goaway = false;
    s.on("goaway", () => (goaway = true));
    const pending = h2request(s, { ":path": "/slow" });
    await until(() => b.requests.length === 1);
    const stopping = f.server.shutdown();
    expect((await pending).status).toBe(200);
    await stopping;
    expect(goaway).toBe(true);
  });

  test("WebSocket over HTTP/2 (RFC 8441 extended CONNECT) reaches an HTTP/1.1 WebSocket backend", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools: { web: { backends: ["${b.url}"] } }
`);
    const s = await h2connect(f.url);
    scope.cleanups.push(() => s.close());
    expect(s.remoteSettings.enableConnectProtocol).toBe(true);
    const req = s.request({ ":method": "CONNECT", ":protocol": "websocket", ":path": "/chat", ":scheme": "http", ":authority": "x" }, {
      endStream: false,
    });
    const status = await new Promise<number>((r) => req.once("response", (h) => r(Number(h[":status"]))));
    expect(status).toBe(200);
    const got: Buffer[] = [];
    req.on("data", (d: Buffer) => got.push(d));
    // A masked text frame "hi" (RFC 6455 §5.2), echoed back unmasked.
    const mask = [1, 2, 3, 4];
    const payload = Buffer.from("hi");
    req.write(Buffer.from([0x81, 0x80 | payload.length, ...mask, ...payload.map((x, i) => x ^ mask[i % 4]!)]));
    await until(() => Buffer.concat(got).length >= 4);
    expect([...Buffer.concat(got)]).toEqual([0x81, 2, 0x68, 0x69]);
    expect(b.accepted[0]!.req.headers["sec-websocket-version"]).toBe("13");
    req.close();
    await until(() => f.access().length === 1);
    expect(f.access()[0]).toMatchObject({ status: 101, protocol: "2", upgrade: "websocket" });
  });
});
