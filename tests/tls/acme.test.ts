/**
 * ACME end to end against Pebble (Let's Encrypt's test CA) and pebble-challtestsrv as its DNS,
 * both on loopback: a fresh Fulcrum obtains a certificate over http-01 and serves it; a restart
 * reuses the stored one without a new order; a short-lived one is renewed; with workers the
 * primary orders and the workers serve; a CA that is down at start leaves the plain listeners
 * serving, the name's handshakes refused (not hanging) and the order retried until it works.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startBackend, closedPort, type TestBackend } from "../helpers/backends.ts";
import { spawnListening } from "../helpers/fulcrum.ts";
import { ensurePebble, startPebble, type Pebble } from "../helpers/pebble.ts";
import { startTlsFulcrum, TestPki } from "../helpers/tls.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
let pki: TestPki;
let backend: TestBackend;

beforeAll(async () => {
  await ensurePebble();
  pki = new TestPki("Pebble HTTPS test CA");
  backend = startBackend("b1");
}, 120_000);

afterAll(async () => {
  await backend?.stop();
  pki?.remove();
});

/** The certificate a handshake naming `name` gets: its serial and issuer, or the error. */
async function served(port: number, name: string): Promise<{ serial?: string; issuer?: string; names?: string; error?: string }> {
  const tls = await import("node:tls");
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: name, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      s.end();
      resolve({ serial: c.serialNumber, issuer: String(c.issuer?.CN), names: c.subjectaltname });
    });
    s.setTimeout(3000, () => s.destroy(new Error("handshake hung")));
    s.on("error", (e) => resolve({ error: e.message }));
  });
}

const config = (o: { http: number; directory: string; storage: string; renew?: string; workers?: number; tlsPort?: number }) => `
listen:
  - 127.0.0.1:${o.http}
  - address: 127.0.0.1:${o.tlsPort ?? 0}
    tls:
      acme: [site.test]
acme:
  email: ops@example.com
  directory: ${o.directory}
  trusted_ca: ${pki.ca.cert}
  storage: ${o.storage}
  ${o.renew ? `renew_before: ${o.renew}` : ""}
admin: { listen: 127.0.0.1:0 }
${o.workers ? `workers: ${o.workers}` : ""}
pools: { web: { backends: [${backend.url}] } }
`;

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

describe("ACME against Pebble", () => {
  let pebble: Pebble;
  let http: number;
  beforeAll(async () => {
    http = closedPort();
    pebble = await startPebble({ httpPort: http, validitySeconds: 20, pki });
  });
  afterAll(async () => await pebble?.stop());

  test("a fresh Fulcrum obtains a certificate, serves it, reuses it after a restart without a new order, and renews it", async () => {
    const storage = pki.path("acme-storage-1");
    let f = await startTlsFulcrum(pki.dir, config({ http, directory: pebble.directory, storage, renew: "12s" }));
    let first: Awaited<ReturnType<typeof served>>;
    try {
      const obtained = await until("the certificate", () => f.logs("certificate obtained over ACME", "info")[0]);
      expect(obtained.properties.name).toBe("site.test");
      first = await served(f.port(1), "site.test");
      expect(first.issuer).toMatch(/^Pebble Intermediate CA/);
      expect(first.names).toBe("DNS:site.test");
      const status = (await (await fetch(`${f.adminUrl}/certificates`)).json()).certificates;
      expect(status).toEqual([
        expect.objectContaining({ names: ["site.test"], source: "acme", state: "serving", last_error: null }),
      ]);
      expect(status[0].issuer).toMatch(/Pebble Intermediate CA/);
      expect(new Date(status[0].not_after).getTime()).toBeGreaterThan(Date.now());
      // Days to expiry, for alerting on a renewal that keeps failing.
      const metrics = await (await fetch(`${f.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/fulcrum_tls_certificate_expiry_days\{[^}]*name="site\.test"[^}]*source="acme"[^}]*\} \d/);
      // Plain traffic and the challenge path are answered as usual meanwhile.
      expect((await fetch(`http://127.0.0.1:${http}/`)).status).toBe(200);
    } finally {
      await f.stop();
    }

    const orders = (pebble.log().match(/Issued certificate serial/g) ?? []).length;
    f = await startTlsFulcrum(pki.dir, config({ http, directory: pebble.directory, storage, renew: "12s" }));
    try {
      // Served at once from acme.storage: the same certificate, no new order.
      expect((await served(f.port(1), "site.test")).serial).toBe(first.serial);
      expect(f.logs("loaded from acme.storage", "info")).toHaveLength(1);
      expect(f.logs("certificate obtained over ACME")).toHaveLength(0);
      expect((pebble.log().match(/Issued certificate serial/g) ?? []).length).toBe(orders);
      // 20 s certificates renewed 12 s before expiry: a new one within ~9 s, served to new handshakes.
      await until("the renewal", () => f.logs("certificate renewed over ACME", "info")[0], 15_000);
      const renewed = await served(f.port(1), "site.test");
      expect(renewed.serial).not.toBe(first.serial);
      expect(renewed.issuer).toMatch(/^Pebble Intermediate CA/);
    } finally {
      await f.stop();
    }
  }, 40_000);

  test("with workers, the primary orders and every worker serves the certificate", async () => {
    const storage = pki.path("acme-storage-2");
    // A fixed port: with workers, only the first listener's port 0 is shared.
    const tlsPort = closedPort();
    const file = pki.write("acme-workers.yaml", config({ http, directory: pebble.directory, storage, workers: 2, tlsPort }));
    const child = await spawnListening([process.execPath, "main.ts", "run", "--config", file], { cwd: ROOT }, 15_000);
    try {
      await until("the certificate", () => child.lines.find((l) => l.includes("certificate obtained over ACME")));
      const admin = JSON.parse(child.lines.find((l) => l.includes("admin API listening"))!).url as string;
      const status = (await (await fetch(`${admin}/certificates`)).json()).certificates;
      expect(status[0].state).toBe("serving");
      const serials = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const r = await served(tlsPort, "site.test");
        expect(r.error).toBeUndefined();
        serials.add(r.serial!);
      }
      expect(serials.size).toBe(1);
    } finally {
      child.kill("SIGTERM");
      await child.exited;
    }
  }, 30_000);
});

describe("a CA that is down at start", () => {
  test("plain listeners serve, the name's handshakes fail at once, the order is retried and logged until it works", async () => {
    const http = closedPort();
    const caPort = closedPort();
    const storage = pki.path("acme-storage-3");
    const f = await startTlsFulcrum(pki.dir, config({ http, directory: `https://127.0.0.1:${caPort}/dir`, storage }));
    let pebble: Pebble | undefined;
    try {
      expect((await fetch(`http://127.0.0.1:${http}/`)).status).toBe(200);
      const failed = await until("the failure to be logged", () => f.logs("ACME order for {name} failed", "error")[0]);
      expect(String(failed.properties.error)).toMatch(/ECONNREFUSED|connect|refused/i);
      expect(failed.properties.retry_s).toBeGreaterThan(0);
      // Refused, not hanging: no certificate exists for the name yet.
      const started = performance.now();
      const r = await served(f.port(1), "site.test");
      expect(r.error).toBeDefined();
      expect(performance.now() - started).toBeLessThan(1000);
      const status = (await (await fetch(`${f.adminUrl}/certificates`)).json()).certificates;
      expect(status[0]).toEqual(expect.objectContaining({ state: "pending", source: "acme" }));
      expect(status[0].last_error).toMatch(/ECONNREFUSED|connect|refused/i);

      pebble = await startPebble({ httpPort: http, port: caPort, pki });
      await until("the retried order", () => f.logs("certificate obtained over ACME", "info")[0], 20_000);
      expect((await served(f.port(1), "site.test")).issuer).toMatch(/^Pebble Intermediate CA/);
      const after = (await (await fetch(`${f.adminUrl}/certificates`)).json()).certificates;
      expect(after[0]).toEqual(expect.objectContaining({ state: "serving", last_error: null }));
    } finally {
      await f.stop();
      await pebble?.stop();
    }
  }, 40_000);
});
