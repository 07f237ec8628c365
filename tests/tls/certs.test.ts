/**
 * Certificates are checked when read: an unreadable file, a key that does not match, an expired
 * certificate and one without SAN names are each reported with the file and its place in the
 * config, by `fulcrum check` and `run` alike (exit 2, nothing listens).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { ConfigError } from "../../core/config/load.ts";
import { parseCertificate } from "../../core/tls/certs.ts";
import { CertSet, type Slot } from "../../core/tls/store.ts";
import { closedPort } from "../helpers/backends.ts";
import { runCli } from "../helpers/fulcrum.ts";
import { startTlsFulcrum, TestPki } from "../helpers/tls.ts";

let pki: TestPki;

beforeAll(() => {
  pki = new TestPki();
  pki.leaf("a", ["a.test"]);
  pki.leaf("b", ["b.test", "*.b.test"]);
  pki.leaf("old", ["old.test"], { days: -1 });
  pki.leaf("nosan", []);
});

afterAll(() => pki?.remove());

const cert = (name: string) =>
  parseCertificate(readFileSync(pki.path(`${name}.pem`), "utf8"), readFileSync(pki.path(`${name}.key`), "utf8"), {
    source: "file",
  });

describe("CertSet: the certificate for a server name", () => {
  test("exact name, then wildcard, then the first certificate; names not case-sensitive", () => {
    const a = cert("a");
    const b = cert("b");
    const set = new CertSet([
      { kind: "file", certFile: "a.pem", keyFile: "a.key", current: a },
      { kind: "file", certFile: "b.pem", keyFile: "b.key", current: b },
    ]);
    expect(set.select("a.test")).toBe(a);
    expect(set.select("B.Test")).toBe(b);
    expect(set.select("x.b.test")).toBe(b);
    expect(set.select("x.y.b.test")).toBe(a);
    expect(set.select("nothing.test")).toBe(a);
    expect(set.defaultCertificate()).toBe(a);
  });

  test("an ACME name without a certificate yet refuses the handshake; once issued it is served", () => {
    const a = cert("a");
    const acme: Slot = { kind: "acme", name: "new.test", current: undefined };
    const set = new CertSet([{ kind: "file", certFile: "a.pem", keyFile: "a.key", current: a }, acme]);
    expect(set.select("new.test")).toBeInstanceOf(Error);
    expect(set.select("other.test")).toBe(a);
    const b = cert("b");
    set.replace(acme, b);
    expect(set.select("new.test")).toBe(a); // b does not name new.test: the default again, no longer refused
    expect(set.select("b.test")).toBe(b);
  });

  test("with only ACME names and none issued, there is no default: every handshake is refused", () => {
    const set = new CertSet([{ kind: "acme", name: "new.test", current: undefined }]);
    expect(set.defaultCertificate()).toBeUndefined();
    expect(set.select("anything.test")).toBeInstanceOf(Error);
  });

  test("the default-change listener runs when the first certificate changes", () => {
    const a = cert("a");
    const slot: Slot = { kind: "file", certFile: "a.pem", keyFile: "a.key", current: a };
    const set = new CertSet([slot]);
    let calls = 0;
    set.onDefaultChange(() => calls++);
    set.replace(slot, cert("b"));
    expect(calls).toBe(1);
  });
});

describe("bad certificates are refused at start, each with its file and config position", () => {
  const yaml = (certs: string) => `
listen:
  - 127.0.0.1:0
  - address: 127.0.0.1:0
    tls:
      certificates:
${certs}
pools:
  web:
    backends: [http://127.0.0.1:1]
`;

  test("every problem at once: unreadable file, key of another certificate, expired, no SAN names", async () => {
    const e = await startTlsFulcrum(
      pki.dir,
      yaml(`        - { cert: missing.pem, key: a.key }
        - { cert: a.pem, key: b.key }
        - { cert: old.pem, key: old.key }
        - { cert: nosan.pem, key: nosan.key }
        - { cert: a.pem, key: a.key }`),
    ).catch((e) => e);
    expect(e).toBeInstanceOf(ConfigError);
    const p = (e as ConfigError).problems;
    expect(p).toHaveLength(4);
    expect(p[0]).toMatch(/fulcrum\.yaml:7:11: listen\[1\]\.tls\.certificates\[0\]: cannot read .*missing\.pem \(ENOENT\)/);
    expect(p[1]).toMatch(/fulcrum\.yaml:8:11: listen\[1\]\.tls\.certificates\[1\]: .*b\.key is not the key of .*a\.pem/);
    expect(p[2]).toMatch(/fulcrum\.yaml:9:11: listen\[1\]\.tls\.certificates\[2\]: .*old\.pem expired on \d{4}-/);
    expect(p[3]).toMatch(/fulcrum\.yaml:10:11: listen\[1\]\.tls\.certificates\[3\]: .*nosan\.pem has no DNS names in subjectAltName/);
  });

  test("a file that is not PEM, and a client_ca that is not a certificate", async () => {
    pki.write("junk.pem", "not a certificate\n");
    const e = await startTlsFulcrum(
      pki.dir,
      `
listen:
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: junk.pem, key: a.key }]
      client_ca: junk.pem
pools: { web: { backends: [http://127.0.0.1:1] } }
`,
    ).catch((e) => e);
    const p = (e as ConfigError).problems;
    expect(p[0]).toMatch(/listen\[0\]\.tls\.certificates\[0\]: .*junk\.pem is not a PEM certificate/);
    expect(p[1]).toMatch(/listen\[0\]\.tls\.client_ca: .*junk\.pem is not a PEM certificate/);
  });

  test("`fulcrum check` and `fulcrum run` exit 2 with the problems, and nothing listens", async () => {
    const port = closedPort();
    const file = pki.write(
      "bad.yaml",
      `
listen:
  - 127.0.0.1:${port}
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: old.pem, key: old.key }]
admin: false
pools: { web: { backends: [http://127.0.0.1:1] } }
`,
    );
    const check = await runCli(["check", "--config", file]);
    expect(check.code).toBe(2);
    expect(check.stderr).toMatch(/bad\.yaml:6:22: listen\[1\]\.tls\.certificates\[0\]: .*old\.pem expired on/);
    const run = await runCli(["run", "--config", file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("old.pem expired on");
    expect(run.stderr).toContain("nothing was started");
    const refused = await fetch(`http://127.0.0.1:${port}/`).then(() => false, () => true);
    expect(refused).toBe(true);
  });

  test("`fulcrum check` accepts good certificates and lists the listeners", async () => {
    const file = pki.write(
      "good.yaml",
      `
listen:
  - 127.0.0.1:8080
  - address: 127.0.0.1:8443
    tls:
      certificates: [{ cert: a.pem, key: a.key }, { cert: b.pem, key: b.key }]
  - { address: 127.0.0.1:8081, redirect_https: 8443 }
admin: false
pools: { web: { backends: [http://127.0.0.1:1] } }
`,
    );
    const check = await runCli(["check", "--config", file]);
    expect(check.stderr).toBe("");
    expect(check.code).toBe(0);
    expect(check.stdout).toContain("listen: 127.0.0.1:8443 TLS 1.2+, 2 certificate file(s)");
    expect(check.stdout).toContain("listen: 127.0.0.1:8081 redirects to https port 8443");
  });
});
