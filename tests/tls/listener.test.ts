/**
 * TLS listeners on loopback: the certificate chosen by SNI, X-Forwarded-Proto and the access
 * log, the redirect listener, mTLS, versions. Certificates come from openssl in a temp folder.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { handshake, httpsGet, run, startTlsFulcrum, TestPki, type TlsFulcrum } from "../helpers/tls.ts";
import { parsePrometheus, sum } from "../helpers/prometheus.ts";

let pki: TestPki;
let backend: TestBackend;
let f: TlsFulcrum;

beforeAll(async () => {
  pki = new TestPki();
  pki.leaf("a", ["a.test", "www.a.test"]);
  pki.leaf("b", ["b.test", "*.b.test"]);
  pki.leaf("client", ["client.test"], { client: true });
  backend = startBackend(
    "b1",
    (req) =>
      new Response(JSON.stringify({ proto: req.headers.get("x-forwarded-proto"), host: req.headers.get("x-forwarded-host") }), {
        headers: { "content-type": "application/json" },
      }),
  );
  f = await startTlsFulcrum(
    pki.dir,
    `
listen:
  - 127.0.0.1:0
  - address: 127.0.0.1:0
    tls:
      certificates:
        - { cert: a.pem, key: a.key }
        - { cert: b.pem, key: b.key }
      handshake_timeout: 1s
  - address: 127.0.0.1:0
    redirect_https: 8443
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: a.pem, key: a.key }]
      client_ca: ca.pem
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: b.pem, key: b.key }]
      min_version: "1.3"
admin: { listen: 127.0.0.1:0 }
pools:
  web:
    backends: [${backend.url}]
`,
  );
});

afterAll(async () => {
  await f?.stop();
  await backend?.stop();
  pki?.remove();
});

describe("a TLS listener chooses its certificate by SNI", () => {
  test("each name gets its own certificate", async () => {
    expect((await handshake(f.port(1), "a.test")).cn).toBe("a.test");
    expect((await handshake(f.port(1), "www.a.test")).cn).toBe("a.test");
    expect((await handshake(f.port(1), "b.test")).cn).toBe("b.test");
  });

  test("a wildcard covers one more label, not two", async () => {
    expect((await handshake(f.port(1), "x.b.test")).cn).toBe("b.test");
    // Not covered by *.b.test: falls back to the first certificate.
    expect((await handshake(f.port(1), "y.x.b.test")).cn).toBe("a.test");
  });

  test("no SNI, or a name no certificate has, gets the first certificate", async () => {
    expect((await handshake(f.port(1), undefined)).cn).toBe("a.test");
    expect((await handshake(f.port(1), "unknown.test")).cn).toBe("a.test");
  });

  test("names are matched without regard to case", async () => {
    expect((await handshake(f.port(1), "B.TEST")).cn).toBe("b.test");
  });

  test("a client that trusts the CA verifies the chosen certificate (curl --resolve)", async () => {
    const port = f.port(1);
    for (const name of ["a.test", "b.test"]) {
      const r = await run([
        "curl",
        "-sS",
        "--cacert",
        pki.ca.cert,
        "--resolve",
        `${name}:${port}:127.0.0.1`,
        `https://${name}:${port}/`,
      ]);
      expect(r.stderr).toBe("");
      expect(JSON.parse(r.stdout)).toEqual({ proto: "https", host: `${name}:${port}` });
    }
  });
});

describe("TLS traffic is told apart", () => {
  test("X-Forwarded-Proto is https on a TLS listener and http on a plain one", async () => {
    const tlsRes = await httpsGet(f.port(1), "a.test", "/p");
    expect(tlsRes.status).toBe(200);
    expect(JSON.parse(tlsRes.body).proto).toBe("https");
    const plain = await fetch(`http://127.0.0.1:${f.port(0)}/p`);
    expect((await plain.json()).proto).toBe("http");
  });

  test("the access log says https for TLS requests", async () => {
    await httpsGet(f.port(1), "a.test", "/logged-tls");
    await fetch(`http://127.0.0.1:${f.port(0)}/logged-plain`);
    await Bun.sleep(20);
    const lines = f.access();
    expect(lines.find((l) => l.path === "/logged-tls")?.scheme).toBe("https");
    expect(lines.find((l) => l.path === "/logged-plain")?.scheme).toBeUndefined();
  });

  test("/metrics counts requests per listener and scheme, and handshakes by result", async () => {
    await httpsGet(f.port(1), "a.test", "/m");
    const m = parsePrometheus(await (await fetch(`${f.adminUrl}/metrics`)).text());
    expect(sum(m, "fulcrum_listener_requests_total", { scheme: "https" })).toBeGreaterThan(0);
    expect(sum(m, "fulcrum_listener_requests_total", { scheme: "http" })).toBeGreaterThan(0);
    expect(sum(m, "fulcrum_tls_handshakes_total", { result: "ok" })).toBeGreaterThan(0);
  });
});

describe("redirect_https", () => {
  test("every request gets 308 to the same host and path on the HTTPS port", async () => {
    const r = await fetch(`http://127.0.0.1:${f.port(2)}/a/b?c=1`, { redirect: "manual", headers: { host: "example.com:8080" } });
    expect(r.status).toBe(308);
    expect(r.headers.get("location")).toBe("https://example.com:8443/a/b?c=1");
  });

  test("an IPv6 literal host keeps its brackets", async () => {
    const r = await fetch(`http://127.0.0.1:${f.port(2)}/x`, { redirect: "manual", headers: { host: "[::1]:8080" } });
    expect(r.headers.get("location")).toBe("https://[::1]:8443/x");
  });
});

describe("mTLS: client_ca", () => {
  test("a client with a certificate from the CA is served", async () => {
    const r = await httpsGet(f.port(3), "a.test", "/", {
      cert: readFileSync(pki.path("client.pem")),
      key: readFileSync(pki.path("client.key")),
    });
    expect(r.status).toBe(200);
  });

  test("a client without a certificate is refused at the handshake", async () => {
    const r = await httpsGet(f.port(3), "a.test", "/").catch((e: Error) => e);
    expect(r).toBeInstanceOf(Error);
  });

  test("a client without SNI must present one too", async () => {
    const r = await httpsGet(f.port(3), undefined, "/").catch((e: Error) => e);
    expect(r).toBeInstanceOf(Error);
  });
});

describe("versions", () => {
  test("TLS 1.0 and 1.1 are refused; 1.2 and 1.3 are served", async () => {
    expect((await handshake(f.port(1), "a.test", { minVersion: "TLSv1", maxVersion: "TLSv1" })).error).toBeDefined();
    expect((await handshake(f.port(1), "a.test", { minVersion: "TLSv1.1", maxVersion: "TLSv1.1" })).error).toBeDefined();
    expect((await handshake(f.port(1), "a.test", { maxVersion: "TLSv1.2" })).protocol).toBe("TLSv1.2");
    expect((await handshake(f.port(1), "a.test")).protocol).toBe("TLSv1.3");
  });

  test('min_version "1.3" refuses TLS 1.2, with SNI or without', async () => {
    expect((await handshake(f.port(4), "b.test", { maxVersion: "TLSv1.2" })).error).toBeDefined();
    expect((await handshake(f.port(4), undefined, { maxVersion: "TLSv1.2" })).error).toBeDefined();
    expect((await handshake(f.port(4), "b.test")).protocol).toBe("TLSv1.3");
  });

  test("a TLS 1.2 client gets a forward-secret AEAD cipher", async () => {
    const r = await run(["openssl", "s_client", "-connect", `127.0.0.1:${f.port(1)}`, "-servername", "a.test", "-tls1_2"]);
    expect(r.stdout).toMatch(/Cipher is ECDHE-ECDSA-AES\d+-GCM-SHA\d+/);
    const weak = await run(
      [
        "openssl",
        "s_client",
        "-connect",
        `127.0.0.1:${f.port(1)}`,
        "-servername",
        "a.test",
        "-tls1_2",
        "-cipher",
        "AES128-SHA:DES-CBC3-SHA",
      ],
    );
    expect(weak.stdout).not.toMatch(/Cipher is (AES128-SHA|DES-CBC3-SHA)/);
  });
});

describe("session resumption", () => {
  test("a client that comes back with its session ticket resumes it", async () => {
    const session = await new Promise<Buffer>((resolve, reject) => {
      const s = require("node:tls").connect({ host: "127.0.0.1", port: f.port(1), servername: "a.test", rejectUnauthorized: false });
      s.once("session", (x: Buffer) => {
        s.end();
        resolve(x);
      });
      s.on("secureConnect", () => s.write("GET / HTTP/1.1\r\nhost: a.test\r\n\r\n"));
      s.on("error", reject);
    });
    const again = await handshake(f.port(1), "a.test", { session });
    expect(again.reused).toBe(true);
  });
});
