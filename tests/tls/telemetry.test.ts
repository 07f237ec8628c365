/** Spans tell TLS traffic apart: url.scheme https, tls.protocol.version and tls.cipher on the SERVER span. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { startOtlpReceiver, type OtlpReceiver } from "../helpers/otlp-receiver.ts";
import { httpsGet, startTlsFulcrum, TestPki, type TlsFulcrum } from "../helpers/tls.ts";

let pki: TestPki;
let backend: TestBackend;
let receiver: OtlpReceiver;
let f: TlsFulcrum;

beforeAll(async () => {
  pki = new TestPki();
  pki.leaf("a", ["a.test"]);
  backend = startBackend("b1");
  receiver = await startOtlpReceiver();
  f = await startTlsFulcrum(
    pki.dir,
    `
listen:
  - 127.0.0.1:0
  - address: 127.0.0.1:0
    tls: { certificates: [{ cert: a.pem, key: a.key }] }
admin: false
pools: { web: { backends: [${backend.url}] } }
telemetry: { traces: { endpoint: "${receiver.url}", scheduled_delay: 20ms } }
`,
  );
});

afterAll(async () => {
  await f?.stop();
  await receiver?.stop();
  await backend?.stop();
  pki?.remove();
});

test("a request over TLS has url.scheme https and the TLS version and cipher; a plain one has neither", async () => {
  expect((await httpsGet(f.port(1), "a.test", "/secure")).status).toBe(200);
  expect((await fetch(`http://127.0.0.1:${f.port(0)}/plain`)).status).toBe(200);
  const spans = (await receiver.waitForSpans(4)).filter((s) => s.kind === "SERVER");
  const secure = spans.find((s) => s.attributes["url.path"] === "/secure")!;
  const plain = spans.find((s) => s.attributes["url.path"] === "/plain")!;
  expect(secure.attributes["url.scheme"]).toBe("https");
  expect(secure.attributes["tls.protocol.name"]).toBe("tls");
  expect(secure.attributes["tls.protocol.version"]).toBe("1.3");
  expect(String(secure.attributes["tls.cipher"])).toMatch(/^TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$/);
  expect(plain.attributes["url.scheme"]).toBe("http");
  expect(plain.attributes["tls.protocol.version"]).toBeUndefined();
});
