/**
 * TLS under Deno (secondary runtime): Deno.serve takes one certificate, so a TLS listener serves
 * its first certificate to every client; X-Forwarded-Proto and the access log say https.
 * SNI choice, rotation without restart, mTLS and ACME serving need Bun (docs/tls.md).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { closedPort, startBackend } from "../helpers/backends.ts";
import { spawnListening } from "../helpers/fulcrum.ts";
import { httpsGet, TestPki } from "../helpers/tls.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
// deno task start allows reads inside the repository only.
const dir = join(ROOT, ".tmp", `tls-deno-${process.pid}`);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a TLS listener under Deno serves its first certificate, with X-Forwarded-Proto https", async () => {
  mkdirSync(dir, { recursive: true });
  const pki = new TestPki();
  const a = pki.leaf("a", ["a.test"]);
  writeFileSync(join(dir, "a.pem"), await Bun.file(a.cert).text());
  writeFileSync(join(dir, "a.key"), await Bun.file(a.key).text());
  pki.remove();
  const backend = startBackend("b1", (req) => new Response(String(req.headers.get("x-forwarded-proto"))));
  const tlsPort = closedPort();
  writeFileSync(
    join(dir, "f.yaml"),
    `listen:\n  - 127.0.0.1:0\n  - address: 127.0.0.1:${tlsPort}\n    tls: { certificates: [{ cert: a.pem, key: a.key }] }\n` +
      `admin: false\nworkers: 1\npools: { web: { backends: [${backend.url}] } }\n`,
  );
  const deno = join(ROOT, "node_modules", ".bin", "deno");
  const child = await spawnListening([deno, "task", "start", "run", "--config", join(dir, "f.yaml")], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}` } as Record<string, string>,
  }, 30_000);
  try {
    const r = await httpsGet(tlsPort, "a.test", "/deno");
    expect(r.status).toBe(200);
    expect(r.body).toBe("https");
    expect(r.cn).toBe("a.test");
    await Bun.sleep(100);
    expect(child.lines.some((l) => l.includes('"path":"/deno"') && l.includes('"scheme":"https"'))).toBe(true);
  } finally {
    child.kill("SIGTERM");
    await child.exited;
    await backend.stop();
  }
}, 60_000);
