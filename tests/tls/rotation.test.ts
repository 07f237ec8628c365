/**
 * Certificate rotation: replaced files are picked up on reload (SIGHUP, POST /reload, or file
 * watching with plugins.watch); new handshakes get the new certificate, established connections
 * continue; a bad new file is refused and the old certificate keeps serving. Under load: 2,000
 * HTTPS requests at concurrency 20 while the files are replaced and SIGHUP sent, none failing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { spawnListening } from "../helpers/fulcrum.ts";
import { handshake, HttpsConn, httpsGet, startTlsFulcrum, TestPki } from "../helpers/tls.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
let pki: TestPki;
let backend: TestBackend;

/** Serial numbers tell the two certificates for a.test apart. */
const serialOf = (file: string) => new X509Certificate(readFileSync(file)).serialNumber;

beforeAll(() => {
  pki = new TestPki();
  pki.leaf("a-v1", ["a.test"]);
  pki.leaf("a-v2", ["a.test"]);
  pki.leaf("b", ["b.test"]);
  pki.leaf("client", ["client.test"], { client: true });
  backend = startBackend("b1");
});

afterAll(async () => {
  await backend?.stop();
  pki?.remove();
});

/** Install version `v` of a.test's certificate as `name`.pem/.key, each file replaced by a rename as certbot does. */
function install(name: string, v: "a-v1" | "a-v2"): void {
  for (const ext of ["pem", "key"]) {
    copyFileSync(pki.path(`${v}.${ext}`), pki.path(`${name}.tmp`));
    renameSync(pki.path(`${name}.tmp`), pki.path(`${name}.${ext}`));
  }
}

/** The serial of the certificate a new handshake gets, as hex like X509Certificate.serialNumber. */
async function servedSerial(port: number, servername: string | undefined): Promise<string> {
  const tls = await import("node:tls");
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...(servername ? { servername } : {}) }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      resolve(serial.toUpperCase());
    });
    s.on("error", reject);
  });
}

const config = (name: string, extra = "") => `
listen:
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: ${name}.pem, key: ${name}.key }, { cert: b.pem, key: b.key }]
${extra}
admin: { listen: 127.0.0.1:0 }
pools: { web: { backends: [${backend.url}] } }
`;

describe("reload picks up rotated certificate files", () => {
  test("new handshakes get the new certificate, with SNI and without; an open connection keeps working", async () => {
    install("rot1", "a-v1");
    const f = await startTlsFulcrum(pki.dir, config("rot1"));
    try {
      const port = f.port(0);
      expect(await servedSerial(port, "a.test")).toBe(serialOf(pki.path("a-v1.pem")));
      const open = new HttpsConn(port, "a.test");
      expect((await open.request("/before")).status).toBe(200);

      install("rot1", "a-v2");
      const r = await fetch(`${f.adminUrl}/reload`, { method: "POST" });
      expect(r.status).toBe(200);
      expect(await servedSerial(port, "a.test")).toBe(serialOf(pki.path("a-v2.pem")));
      // No SNI: the listener's default certificate was replaced too.
      expect(await servedSerial(port, undefined)).toBe(serialOf(pki.path("a-v2.pem")));
      expect((await handshake(port, "b.test")).cn).toBe("b.test");
      // The connection opened before the rotation goes on with the certificate it was given.
      const after = await open.request("/after");
      expect(after.status).toBe(200);
      open.close();
      expect(f.logs("certificate reloaded", "info").length).toBe(1);
      const status = (await (await fetch(`${f.adminUrl}/certificates`)).json()).certificates;
      expect(status[0].fingerprint).toBe(new X509Certificate(readFileSync(pki.path("a-v2.pem"))).fingerprint256);
    } finally {
      await f.stop();
    }
  });

  test("a bad new file is refused, logged, shown by the admin API, and the old certificate keeps serving", async () => {
    install("rot2", "a-v1");
    const f = await startTlsFulcrum(pki.dir, config("rot2"));
    try {
      const port = f.port(0);
      // A key that does not belong to the certificate (half of a rotation).
      copyFileSync(pki.path("b.key"), pki.path("rot2.key"));
      const r = await fetch(`${f.adminUrl}/reload`, { method: "POST" });
      expect(r.status).toBe(422);
      expect(JSON.stringify(await r.json())).toContain("is not the key of");
      expect(await servedSerial(port, "a.test")).toBe(serialOf(pki.path("a-v1.pem")));
      expect(f.logs("certificate reload refused", "error").length).toBe(1);
      const status = (await (await fetch(`${f.adminUrl}/certificates`)).json()).certificates;
      expect(status[0].last_error).toContain("is not the key of");
      // The rest of the rotation arrives: the next reload takes it.
      install("rot2", "a-v2");
      expect((await fetch(`${f.adminUrl}/reload`, { method: "POST" })).status).toBe(200);
      expect(await servedSerial(port, "a.test")).toBe(serialOf(pki.path("a-v2.pem")));
      expect((await (await fetch(`${f.adminUrl}/certificates`)).json()).certificates[0].last_error).toBeNull();
    } finally {
      await f.stop();
    }
  });

  test("with plugins.watch the new files are picked up without a signal", async () => {
    install("rot3", "a-v1");
    const f = await startTlsFulcrum(pki.dir, config("rot3", "plugins: { watch: true }"));
    try {
      install("rot3", "a-v2");
      let serial = "";
      for (let i = 0; i < 50 && serial !== serialOf(pki.path("a-v2.pem")); i++) {
        await Bun.sleep(100);
        serial = await servedSerial(f.port(0), "a.test");
      }
      expect(serial).toBe(serialOf(pki.path("a-v2.pem")));
    } finally {
      await f.stop();
    }
  });

  test("mTLS still asks clients without SNI for a certificate after the default one is replaced", async () => {
    install("rot4", "a-v1");
    const f = await startTlsFulcrum(
      pki.dir,
      config("rot4").replace("certificates: [{ cert: rot4.pem", "client_ca: ca.pem\n      certificates: [{ cert: rot4.pem"),
    );
    try {
      install("rot4", "a-v2");
      expect((await fetch(`${f.adminUrl}/reload`, { method: "POST" })).status).toBe(200);
      // TLS 1.3 clients learn of the refusal after their side of the handshake: on the request.
      expect(await httpsGet(f.port(0), undefined).catch((e: Error) => e)).toBeInstanceOf(Error);
      expect(await httpsGet(f.port(0), "a.test").catch((e: Error) => e)).toBeInstanceOf(Error);
      const withCert = await httpsGet(f.port(0), undefined, "/", {
        cert: readFileSync(pki.path("client.pem")),
        key: readFileSync(pki.path("client.key")),
      });
      expect(withCert.status).toBe(200);
      expect(withCert.cn).toBe("a.test");
    } finally {
      await f.stop();
    }
  });
});

describe("rotation under load", () => {
  test.each([1, 2])(
    "2,000 HTTPS requests at concurrency 20 while the files are replaced and SIGHUP sent: none fails (workers: %d)",
    async (workers) => {
      const name = `load${workers}`;
      install(name, "a-v1");
      writeFileSync(
        pki.path(`${name}.yaml`),
        config(name).replace("admin: { listen: 127.0.0.1:0 }", `admin: false\nworkers: ${workers}\nlog: { access_log: false }`),
      );
      const child = await spawnListening([process.execPath, "main.ts", "run", "--config", pki.path(`${name}.yaml`)], { cwd: ROOT }, 15_000);
      try {
        const port = Number(new URL(child.url.replace("https:", "http:")).port);
        const failures: string[] = [];
        const seen = new Set<string>();
        let done = 0;
        let rotated = false;
        // Each worker keeps a connection while it works and opens a new one every 25 requests, so
        // connections made before and after the rotation are both in the mix.
        const worker = async (w: number) => {
          let conn = new HttpsConn(port, "a.test");
          for (let i = 0; i < 100; i++) {
            if (i > 0 && i % 25 === 0) {
              conn.close();
              conn = new HttpsConn(port, "a.test");
            }
            try {
              const r = await conn.request(`/w${w}/${i}`, {}, "a.test");
              if (r.status !== 200) failures.push(`status ${r.status}`);
            } catch (e) {
              failures.push(String(e));
              conn.close();
              conn = new HttpsConn(port, "a.test");
            }
            done++;
            if (!rotated && done >= 600) {
              rotated = true;
              install(name, "a-v2");
              child.kill("SIGHUP");
            }
          }
          conn.close();
        };
        await Promise.all(Array.from({ length: 20 }, (_, w) => worker(w)));
        expect(failures).toEqual([]);
        expect(done).toBe(2000);
        for (let i = 0; i < 100 && !child.lines.some((l) => l.includes('"message":"reloaded"')); i++) await Bun.sleep(50);
        expect(child.lines.some((l) => l.includes('"message":"reloaded"'))).toBe(true);
        for (let i = 0; i < 20; i++) seen.add(await servedSerial(port, "a.test"));
        expect([...seen]).toEqual([serialOf(pki.path("a-v2.pem"))]);
      } finally {
        child.kill("SIGTERM");
        await child.exited;
      }
    },
    60_000,
  );
});
