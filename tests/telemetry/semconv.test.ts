// The request path's spans against the OpenTelemetry HTTP semantic conventions (stable, v1.x):
// SERVER spans carry url.query, server.address/server.port from Host and the HTTP version; CLIENT
// spans' url.full is what was sent upstream, query included; a method outside the known list is
// `_OTHER` with http.request.method_original, in span names `HTTP`. Decoded with the official
// OTLP schema (tests/helpers/otlp-proto.ts).
import { describe, expect, test } from "bun:test";
import { outcome, RawClient } from "../helpers/raw-client.ts";
import { startRawBackend, type RawBackend } from "../helpers/backends.ts";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { testScope } from "../helpers/scope.ts";
import { createTelemetry } from "../../core/telemetry/tracing.ts";
import { knownMethods } from "../../core/telemetry/config.ts";

const { cleanups, fulcrum } = testScope();

/** Answers 200 to anything (Bun.serve would refuse a lower-case method or a request without Host). */
function backend(): RawBackend & { lines(): string[] } {
  const b = startRawBackend((_head, s) => void s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  cleanups.push(() => b.stop());
  return { ...b, lines: () => b.heads.map((h) => h.head.split("\r\n")[0]!) };
}

async function receiver(): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver();
  cleanups.push(() => r.stop());
  return r;
}

const yaml = (backendUrl: string, traces: string, extra = "") =>
  `pools:\n  web: { backends: [{ url: "${backendUrl}", id: b1 }] }\n${extra}telemetry:\n  traces: { endpoint: "${traces}", scheduled_delay: 20ms }\n`;

/** One request on its own connection, written as bytes; its SERVER and CLIENT spans. */
async function traced(r: OtlpReceiver, port: number, head: string): Promise<{ server: ReceivedSpan; clients: ReceivedSpan[] }> {
  r.clear();
  const c = await RawClient.connect(port);
  cleanups.push(() => c.destroy());
  c.write(head);
  expect(outcome(await c.readResponse())).toBe(200);
  const spans = await r.waitForSpans(2);
  return { server: spans.find((s) => s.kind === "SERVER")!, clients: spans.filter((s) => s.kind === "CLIENT") };
}

describe("SERVER span attributes", () => {
  test("url.query (only when sent), server.address and server.port from Host, network.protocol.version", async () => {
    const r = await receiver();
    const b = backend();
    const f = await fulcrum(yaml(b.url, r.url));
    const port = f.server.listener.port;

    const withQuery = await traced(r, port, `GET /s?q=OpenTelemetry&x=%20 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    expect(withQuery.server.attributes).toMatchObject({
      "url.path": "/s",
      "url.query": "q=OpenTelemetry&x=%20",
      "url.scheme": "http",
      "server.address": "127.0.0.1",
      "server.port": port,
      "network.protocol.version": "1.1",
    });

    // No query: no url.query at all. A Host without a port means the scheme's default (RFC 9110 §4.2.1).
    const bare = await traced(r, port, "GET /s HTTP/1.1\r\nHost: www.example.test\r\n\r\n");
    expect(bare.server.attributes["url.query"]).toBeUndefined();
    expect(bare.server.attributes).toMatchObject({ "url.path": "/s", "server.address": "www.example.test", "server.port": 80 });

    // An empty query was still sent; IPv6 literals lose their brackets.
    const v6 = await traced(r, port, "GET /s? HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
    expect(v6.server.attributes).toMatchObject({ "url.query": "", "server.address": "::1", "server.port": 8443 });

    // HTTP/1.0 without Host: no server.address or server.port (the conventions: set them only when known).
    const old = await traced(r, port, "GET /s?a=1 HTTP/1.0\r\n\r\n");
    expect(old.server.attributes).toMatchObject({ "network.protocol.version": "1.0", "url.query": "a=1" });
    expect(old.server.attributes["server.address"]).toBeUndefined();
    expect(old.server.attributes["server.port"]).toBeUndefined();
  });

  test("a web Request (the Deno listener, gateway.fetch): path, query, scheme and port from its URL and Host", async () => {
    const r = await receiver();
    const tel = await createTelemetry({ traces: { endpoint: r.url, scheduled_delay: 20 } }, { serviceVersion: "0", env: {} });
    cleanups.push(() => tel.shutdown(1000));
    const cases: [Request, Record<string, unknown>][] = [
      [
        new Request("https://h.test/a/b?x=1#frag"),
        { "url.path": "/a/b", "url.query": "x=1", "url.scheme": "https", "server.address": "h.test", "server.port": 443 },
      ],
      [
        new Request("http://h.test:8080/c", { headers: { host: "front.test:9000" } }),
        { "url.path": "/c", "server.address": "front.test", "server.port": 9000 },
      ],
      [new Request("http://h.test"), { "url.path": "/", "server.address": "h.test", "server.port": 80 }],
    ];
    for (const [req] of cases) tel.endServer(tel.startServerSpan(req, "", "10.0.0.1"), 200);
    const spans = await r.waitForSpans(cases.length);
    for (const [req, want] of cases) {
      const got = spans.find((s) => s.attributes["url.path"] === want["url.path"])!;
      expect(got.attributes, req.url).toMatchObject(want);
      if (!("url.query" in want)) expect(got.attributes["url.query"]).toBeUndefined();
      // The version of a web Request is not known: not set rather than guessed.
      expect(got.attributes["network.protocol.version"]).toBeUndefined();
    }
  });
});

describe("CLIENT span attributes", () => {
  test("url.full is the backend URL with the path and query sent", async () => {
    const r = await receiver();
    const b = backend();
    const f = await fulcrum(yaml(b.url, r.url));
    const { clients } = await traced(r, f.server.listener.port, "GET /users/42?page=2&sort=name HTTP/1.1\r\nHost: a.test\r\n\r\n");
    expect(b.lines()).toEqual(["GET /users/42?page=2&sort=name HTTP/1.1"]);
    expect(clients[0]!.attributes).toMatchObject({
      "url.full": `${b.url}/users/42?page=2&sort=name`,
      "server.address": "127.0.0.1",
      "server.port": b.port,
    });
  });
});

describe("unknown methods", () => {
  test("PURGE: _OTHER with http.request.method_original on both spans, both named HTTP …", async () => {
    const r = await receiver();
    const b = backend();
    const f = await fulcrum(yaml(b.url, r.url));
    const { server, clients } = await traced(r, f.server.listener.port, "PURGE /cache/x?all=1 HTTP/1.1\r\nHost: a.test\r\n\r\n");
    expect(b.lines()).toEqual(["PURGE /cache/x?all=1 HTTP/1.1"]);
    const route = f.access()[0]!.route as string;
    expect(server.name).toBe(`HTTP ${route}`);
    expect(server.attributes).toMatchObject({ "http.request.method": "_OTHER", "http.request.method_original": "PURGE" });
    expect(clients).toHaveLength(1);
    expect(clients[0]!.name).toBe("HTTP web");
    expect(clients[0]!.attributes).toMatchObject({
      "http.request.method": "_OTHER",
      "http.request.method_original": "PURGE",
      "url.full": `${b.url}/cache/x?all=1`,
    });

    // A known method has no method_original, on either span.
    const get = await traced(r, f.server.listener.port, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    expect(get.server.name).toBe(`GET ${route}`);
    expect(get.clients[0]!.name).toBe("GET web");
    for (const s of [get.server, ...get.clients]) expect(s.attributes["http.request.method_original"]).toBeUndefined();
  });

  test("methods are case-sensitive: `get` is _OTHER (method_original get)", async () => {
    const r = await receiver();
    const b = backend();
    const f = await fulcrum(yaml(b.url, r.url));
    const { server, clients } = await traced(r, f.server.listener.port, "get / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    for (const s of [server, ...clients]) {
      expect(s.attributes).toMatchObject({ "http.request.method": "_OTHER", "http.request.method_original": "get" });
    }
  });

  test("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS replaces the known list whole", async () => {
    expect([...knownMethods(undefined)].sort()).toEqual(["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]);
    expect([...knownMethods(" GET, PURGE ,")]).toEqual(["GET", "PURGE"]);

    const r = await receiver();
    const b = backend();
    const f = await fulcrum(yaml(b.url, r.url), { env: { OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS: "GET,PURGE" } });
    const port = f.server.listener.port;
    const purge = await traced(r, port, "PURGE /x HTTP/1.1\r\nHost: a.test\r\n\r\n");
    expect(purge.clients[0]!.name).toBe("PURGE web");
    for (const s of [purge.server, ...purge.clients]) {
      expect(s.attributes["http.request.method"]).toBe("PURGE");
      expect(s.attributes["http.request.method_original"]).toBeUndefined();
    }
    const post = await traced(r, port, "POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n");
    expect(post.server.attributes).toMatchObject({ "http.request.method": "_OTHER", "http.request.method_original": "POST" });
  });
});
