/**
 * Bad input on a TLS port: plain HTTP, garbage, TLS 1.0, a stalled handshake, a client that
 * rejects the certificate it got. Each gets a clean close and a debug log line, is counted in
 * /metrics by reason, and the process keeps serving. A slowloris over TLS does not starve others.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { readFileSync } from "node:fs";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { handshake, httpsGet, run, startTlsFulcrum, TestPki, type TlsFulcrum } from "../helpers/tls.ts";
import { parsePrometheus, sum } from "../helpers/prometheus.ts";

let pki: TestPki;
let backend: TestBackend;
let f: TlsFulcrum;

beforeAll(async () => {
  pki = new TestPki();
  pki.leaf("a", ["a.test"]);
  backend = startBackend("b1");
  f = await startTlsFulcrum(
    pki.dir,
    `
listen:
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: a.pem, key: a.key }]
      handshake_timeout: 1s
admin: { listen: 127.0.0.1:0 }
log: { level: debug }
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

/** Connect over plain TCP, send `bytes` (if any), and wait for the server to close; resolves with what came back and when. */
function raw(port: number, bytes: Uint8Array | string | undefined, limitMs = 5000): Promise<{ closedAfterMs: number; received: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let received = 0;
    const s = net.connect(port, "127.0.0.1", () => {
      if (bytes !== undefined) s.write(bytes);
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`not closed within ${limitMs}ms`));
    }, limitMs);
    s.on("data", (d) => (received += d.length));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ closedAfterMs: performance.now() - started, received });
    });
  });
}

async function handshakeCounts(): Promise<Map<string, number>> {
  const m = parsePrometheus(await (await fetch(`${f.adminUrl}/metrics`)).text());
  const out = new Map<string, number>();
  for (const r of ["ok", "http_request", "not_tls", "protocol_version", "timeout", "client_alert", "closed"]) {
    out.set(r, sum(m, "fulcrum_tls_handshakes_total", { result: r }));
  }
  return out;
}

async function stillServing(): Promise<void> {
  const r = await httpsGet(f.port(0), "a.test", "/");
  expect(r.status).toBe(200);
}

describe("bad input on the TLS port gets a clean close, a debug line and a count", () => {
  test("a plain-HTTP request", async () => {
    const r = await raw(f.port(0), "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    expect(r.closedAfterMs).toBeLessThan(1000);
    await Bun.sleep(20);
    expect((await handshakeCounts()).get("http_request")).toBeGreaterThanOrEqual(1);
    expect(f.logs("TLS handshake failed", "debug").some((l) => l.properties.reason === "http_request")).toBe(true);
    await stillServing();
  });

  test("garbage bytes", async () => {
    const garbage = new Uint8Array(512).map((_, i) => (i * 131 + 7) & 0xff);
    const r = await raw(f.port(0), garbage);
    expect(r.closedAfterMs).toBeLessThan(1000);
    await Bun.sleep(20);
    expect((await handshakeCounts()).get("not_tls")).toBeGreaterThanOrEqual(1);
    await stillServing();
  });

  test("a TLS 1.0-only client (openssl s_client -tls1)", async () => {
    const r = await run([
      "openssl",
      "s_client",
      "-connect",
      `127.0.0.1:${f.port(0)}`,
      "-servername",
      "a.test",
      "-tls1",
      "-cipher",
      "DEFAULT@SECLEVEL=0",
    ]);
    expect(r.stdout).not.toContain("BEGIN CERTIFICATE");
    expect(r.stderr + r.stdout).toMatch(/protocol version|alert|no protocols available|wrong version/i);
    await Bun.sleep(20);
    expect((await handshakeCounts()).get("protocol_version")).toBeGreaterThanOrEqual(1);
    await stillServing();
  });

  test("a handshake that never starts is closed after tls.handshake_timeout", async () => {
    const r = await raw(f.port(0), undefined);
    // 1s timeout, checked every second.
    expect(r.closedAfterMs).toBeGreaterThan(900);
    expect(r.closedAfterMs).toBeLessThan(3500);
    expect((await handshakeCounts()).get("timeout")).toBeGreaterThanOrEqual(1);
    expect(f.logs("TLS handshake failed", "debug").some((l) => l.properties.reason === "timeout")).toBe(true);
    await stillServing();
  });

  test("a ClientHello for an unknown name gets the first certificate, and a verifying client gives up", async () => {
    const r = await handshake(f.port(0), "unknown.test", { rejectUnauthorized: true, ca: readFileSync(pki.ca.cert) });
    expect(r.error).toBeDefined();
    await stillServing();
  });
});

describe("a slowloris over TLS does not starve other clients", () => {
  test("300 stalled handshakes and 50 idle TLS connections; others are served meanwhile and the stalled ones are closed", async () => {
    // A ClientHello record header promising more than is ever sent.
    const partialHello = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    const stalled = Array.from({ length: 300 }, () => raw(f.port(0), partialHello, 8000));
    const { HttpsConn } = await import("../helpers/tls.ts");
    const idle = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const c = new HttpsConn(f.port(0), "a.test");
        await c.ready;
        return c;
      }),
    );
    const started = performance.now();
    const served = await Promise.all(Array.from({ length: 100 }, () => httpsGet(f.port(0), "a.test", "/").then((r) => r.status)));
    expect(served.every((s) => s === 200)).toBe(true);
    expect(performance.now() - started).toBeLessThan(3000);
    const closed = await Promise.all(stalled);
    expect(closed.every((c) => c.closedAfterMs < 4000)).toBe(true);
    for (const c of idle) c.close();
  }, 20_000);
});
