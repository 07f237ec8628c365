// HTTP/2 on TLS listeners, chosen by ALPN: `h2` is offered by default (`tls.alpn: [h2, http/1.1]`),
// served by the same HTTP/2 front and gateway as h2c; a listener whose alpn lists only http/1.1
// stays HTTP/1.1. Certificates from openssl in a temp folder (tests/helpers/tls.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { startTlsFulcrum, TestPki, type TlsFulcrum } from "../helpers/tls.ts";
import { nghttp2Tools, run } from "../helpers/h2.ts";
import { startOtlpReceiver, type OtlpReceiver } from "../helpers/otlp-receiver.ts";

const tools = nghttp2Tools();
let pki: TestPki;
let backend: TestBackend;
let receiver: OtlpReceiver;
let f: TlsFulcrum;

beforeAll(async () => {
  pki = new TestPki();
  pki.leaf("a", ["a.test"]);
  backend = startBackend(
    "b1",
    (req) =>
      new Response(
        JSON.stringify({ proto: req.headers.get("x-forwarded-proto"), host: req.headers.get("host"), path: new URL(req.url).pathname }),
        {
          headers: { "content-type": "application/json" },
        },
      ),
  );
  receiver = await startOtlpReceiver();
  f = await startTlsFulcrum(
    pki.dir,
    `
listen:
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: a.pem, key: a.key }]
    http2: { max_concurrent_streams: 64 }
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: a.pem, key: a.key }]
      alpn: [http/1.1]
admin: false
telemetry: { traces: { endpoint: "${receiver.url}", protocol: http/json, scheduled_delay: 20ms } }
pools:
  web:
    backends: [${backend.url}]
`,
  );
});

afterAll(async () => {
  await f?.stop();
  await backend?.stop();
  await receiver?.stop();
  pki?.remove();
});

const curl = (port: number, path: string, extra: string[] = []) =>
  run([
    "curl",
    "-sS",
    "--cacert",
    pki.ca.cert,
    "--resolve",
    `a.test:${port}:127.0.0.1`,
    ...extra,
    "-w",
    "\n%{http_version}",
    `https://a.test:${port}${path}`,
  ]);

describe("HTTP/2 by ALPN on a TLS listener", () => {
  test("curl --http2 negotiates h2 and is proxied with X-Forwarded-Proto https; the access log says protocol 2 and https", async () => {
    const r = await curl(f.port(0), "/alpn", ["--http2"]);
    expect(r.stderr).toBe("");
    const [body, version] = r.stdout.split("\n");
    expect(version).toBe("2");
    expect(JSON.parse(body!)).toEqual({ proto: "https", host: `a.test:${f.port(0)}`, path: "/alpn" });
    await Bun.sleep(30);
    expect(f.access().find((l) => l.path === "/alpn")).toMatchObject({ protocol: "2", scheme: "https", status: 200 });
  });

  test("its span says HTTP/2 over TLS", async () => {
    const r = await curl(f.port(0), "/traced", ["--http2"]);
    expect(r.stdout.endsWith("\n2")).toBe(true);
    // The first test's request was traced too: its two spans, then these two.
    const spans = await receiver.waitForSpans(4);
    const server = spans.find((s) => s.kind === "SERVER" && s.attributes["url.path"] === "/traced")!;
    expect(server.attributes).toMatchObject({ "network.protocol.version": "2", "url.scheme": "https" });
    expect(String(server.attributes["tls.protocol.version"] ?? "")).not.toBe("");
  });

  test("the listener's http2 settings are what the client is told", async () => {
    const session = http2.connect(`https://127.0.0.1:${f.port(0)}`, { ca: await Bun.file(pki.ca.cert).text(), servername: "a.test" });
    try {
      const settings = await new Promise<http2.Settings>((resolve, reject) => {
        session.once("remoteSettings", resolve);
        session.once("error", reject);
      });
      expect(settings.maxConcurrentStreams).toBe(64);
      expect(settings.enableConnectProtocol).toBe(true);
    } finally {
      session.close();
    }
  });

  test.skipIf(!tools)("nghttp over TLS: several streams on one connection", async () => {
    const port = f.port(0);
    const r = await run([
      "nghttp",
      "-n",
      "-s",
      "-y",
      `https://127.0.0.1:${port}/1`,
      `https://127.0.0.1:${port}/2`,
      `https://127.0.0.1:${port}/3`,
    ]);
    expect(r.code).toBe(0);
    // nghttp's table: one line per stream, with its status and path.
    expect(r.stdout.split("\n").filter((l) => / 200 .* \/[123]$/.test(l))).toHaveLength(3);
  });

  test("a listener whose alpn lists only http/1.1 answers curl --http2 over HTTP/1.1", async () => {
    const r = await curl(f.port(1), "/h1-only", ["--http2"]);
    expect(r.stdout.endsWith("\n1.1")).toBe(true);
  });

  test("plain HTTP/1.1 over TLS still works on the h2 listener", async () => {
    const r = await curl(f.port(0), "/h1", ["--http1.1"]);
    expect(r.stdout.endsWith("\n1.1")).toBe(true);
  });
});
