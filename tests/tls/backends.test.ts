/**
 * TLS to backends: `https://` backends are verified by default; `pools.<name>.tls` gives the CA,
 * the server name, a client certificate (mTLS to the backend) or turns verification off; health
 * checks use the same settings.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { Server } from "bun";
import { startFulcrum } from "../helpers/fulcrum.ts";
import { TestPki } from "../helpers/tls.ts";

let pki: TestPki;
let plainTls: Server<undefined>;
let mtls: Server<undefined>;

beforeAll(() => {
  pki = new TestPki();
  pki.leaf("backend", ["backend.test"]);
  pki.leaf("proxy-client", ["fulcrum.test"], { client: true });
  const tls = { cert: readFileSync(pki.path("backend.pem"), "utf8"), key: readFileSync(pki.path("backend.key"), "utf8") };
  plainTls = Bun.serve({ hostname: "127.0.0.1", port: 0, tls, fetch: () => new Response("secure backend\n") });
  mtls = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { ...tls, ca: readFileSync(pki.ca.cert, "utf8"), requestCert: true, rejectUnauthorized: true },
    fetch: () => new Response("mtls backend\n"),
  });
});

afterAll(async () => {
  await plainTls?.stop(true);
  await mtls?.stop(true);
  pki?.remove();
});

const pool = (port: number, tls: string, health = "") => `
pools:
  web:
    backends: [https://127.0.0.1:${port}]
    ${tls ? `tls: ${tls}` : ""}
    ${health}
    retry: { attempts: 1 }
`;

async function statusThrough(yaml: string): Promise<{ status: number; body: string }> {
  const f = await startFulcrum(yaml);
  try {
    const r = await fetch(`${f.url}/`);
    return { status: r.status, body: await r.text() };
  } finally {
    await f.stop();
  }
}

describe("https:// backends are verified", () => {
  test("by default against the system's CAs: a backend with a test CA's certificate gets 502", async () => {
    expect((await statusThrough(pool(plainTls.port!, ""))).status).toBe(502);
  });

  test("with tls.ca and tls.server_name the backend is trusted", async () => {
    const r = await statusThrough(pool(plainTls.port!, `{ ca: ${pki.ca.cert}, server_name: backend.test }`));
    expect(r).toEqual({ status: 200, body: "secure backend\n" });
  });

  test("the name is checked too: the right CA but a certificate for another name gets 502", async () => {
    expect((await statusThrough(pool(plainTls.port!, `{ ca: ${pki.ca.cert}, server_name: other.test }`))).status).toBe(502);
    // An IP address in the URL is not in the certificate either.
    expect((await statusThrough(pool(plainTls.port!, `{ ca: ${pki.ca.cert} }`))).status).toBe(502);
  });

  test("insecure_skip_verify accepts any certificate", async () => {
    expect((await statusThrough(pool(plainTls.port!, `{ insecure_skip_verify: true }`))).status).toBe(200);
  });

  test("a 502 for an untrusted backend says the TLS handshake failed", async () => {
    const f = await startFulcrum(pool(plainTls.port!, ""));
    try {
      await fetch(`${f.url}/`);
      await Bun.sleep(20);
      expect(String(f.access()[0]?.error)).toContain("TLS handshake with the backend failed");
    } finally {
      await f.stop();
    }
  });
});

test("an untrusted backend never receives a byte of the request", async () => {
  let received = 0;
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: readFileSync(pki.path("backend.pem"), "utf8"), key: readFileSync(pki.path("backend.key"), "utf8") },
    socket: { data: (_s, d) => void (received += d.length) },
  });
  try {
    expect((await statusThrough(pool(listener.port, `{ server_name: backend.test }`))).status).toBe(502);
    await Bun.sleep(50);
    expect(received).toBe(0);
  } finally {
    listener.stop(true);
  }
});

describe("mTLS to backends: tls.cert and tls.key", () => {
  test("a backend that requires a client certificate gets Fulcrum's", async () => {
    const base = `ca: ${pki.ca.cert}, server_name: backend.test`;
    expect((await statusThrough(pool(mtls.port!, `{ ${base} }`))).status).toBe(502);
    const r = await statusThrough(
      pool(mtls.port!, `{ ${base}, cert: ${pki.path("proxy-client.pem")}, key: ${pki.path("proxy-client.key")} }`),
    );
    expect(r).toEqual({ status: 200, body: "mtls backend\n" });
  });

  test("a client certificate file that is missing is a config problem with its position", async () => {
    const e = await startFulcrum(pool(mtls.port!, `{ cert: ${pki.path("nope.pem")}, key: ${pki.path("nope.key")} }`)).catch((e) => e);
    expect(String(e.problems?.[0])).toMatch(/test\.yaml:\d+:\d+: pools\.web\.tls: cannot read .*nope\.pem \(ENOENT\)/);
  });
});

describe("health checks use the pool's TLS settings", () => {
  const health = "health: { path: /, interval: 50ms, timeout: 500ms, unhealthy_threshold: 1, healthy_threshold: 1, initial: unknown }";

  test("trusted: the backend turns healthy", async () => {
    const f = await startFulcrum(pool(plainTls.port!, `{ ca: ${pki.ca.cert}, server_name: backend.test }`, health));
    try {
      const b = f.server.gateway.pools.get("web")!.backends[0]!;
      for (let i = 0; i < 40 && !b.healthy; i++) await Bun.sleep(50);
      expect(b.healthy).toBe(true);
      expect((await fetch(`${f.url}/`)).status).toBe(200);
    } finally {
      await f.stop();
    }
  });

  test("untrusted: the probe fails and says why", async () => {
    const f = await startFulcrum(pool(plainTls.port!, `{ server_name: backend.test }`, health));
    try {
      const b = f.server.gateway.pools.get("web")!.backends[0]!;
      await Bun.sleep(300);
      expect(b.healthy).toBe(false);
      expect(JSON.stringify(b.status())).toMatch(/certificate|verify|issuer/i);
    } finally {
      await f.stop();
    }
  });
});
