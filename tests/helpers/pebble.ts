/**
 * Pebble, Let's Encrypt's ACME test server, and pebble-challtestsrv as its DNS (Debian's `pebble`
 * package, installed here when missing), on loopback ports of their own. Every name resolves to
 * 127.0.0.1, so Pebble validates http-01 challenges against the Fulcrum on `httpPort`.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closedPort } from "./backends.ts";
import { run, TestPki } from "./tls.ts";

/** Install Debian's pebble package if `pebble` is not on PATH (apt-get update only if the first try fails). */
export async function ensurePebble(): Promise<void> {
  const has = async () => (await run(["sh", "-c", "command -v pebble && command -v pebble-challtestsrv"])).code === 0;
  if (await has()) return;
  let r = await run(["apt-get", "install", "-y", "pebble"]);
  if (r.code !== 0) {
    await run(["apt-get", "update"]);
    r = await run(["apt-get", "install", "-y", "pebble"]);
  }
  if (!(await has())) throw new Error(`pebble is not installed and apt-get install -y pebble failed:\n${r.stderr}`);
}

export interface Pebble {
  /** The ACME directory URL. */
  readonly directory: string;
  /** PEM file of the CA that signed Pebble's own HTTPS certificate (Fulcrum's `acme.trusted_ca`). */
  readonly trustedCa: string;
  /** Pebble's log so far. */
  log(): string;
  stop(): Promise<void>;
}

export interface PebbleOptions {
  /** The port Pebble sends http-01 validations to (Fulcrum's plain listener). */
  httpPort: number;
  /** Validity of the certificates it issues, in seconds (short ones to test renewal). */
  validitySeconds?: number;
  /** Listen on this port for the directory (default: a free one). */
  port?: number;
  /** Reuse this CA for Pebble's HTTPS certificate (a restarted Pebble that clients already trust). */
  pki?: TestPki;
}

/** Start pebble-challtestsrv (DNS) and Pebble; resolves once the directory answers. */
export async function startPebble(o: PebbleOptions): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-pebble-"));
  const pki = o.pki ?? new TestPki("Pebble HTTPS test CA");
  // The directory is https://127.0.0.1:PORT: Pebble's certificate carries the address.
  const ipCert = pki.leaf(`pebble-${Date.now()}`, ["localhost", "127.0.0.1"]);
  const port = o.port ?? closedPort();
  const dns = closedPort();
  writeFileSync(
    join(dir, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${closedPort()}`,
        certificate: ipCert.cert,
        privateKey: ipCert.key,
        httpPort: o.httpPort,
        tlsPort: closedPort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        ...(o.validitySeconds ? { certificateValidityPeriod: o.validitySeconds } : {}),
      },
    }),
  );
  const chall = Bun.spawn(
    [
      "pebble-challtestsrv",
      "-dns01",
      `127.0.0.1:${dns}`,
      "-http01",
      "",
      "-https01",
      "",
      "-tlsalpn01",
      "",
      "-management",
      `127.0.0.1:${closedPort()}`,
      "-defaultIPv6",
      "",
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  let text = "";
  const pebble = Bun.spawn(["pebble", "-config", join(dir, "pebble.json"), "-dnsserver", `127.0.0.1:${dns}`], {
    cwd: dir,
    env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
    stdout: "pipe",
    stderr: "pipe",
  });
  void (async () => {
    for await (const chunk of pebble.stdout as ReadableStream<Uint8Array>) text += new TextDecoder().decode(chunk);
  })();
  const directory = `https://127.0.0.1:${port}/dir`;
  const ca = await Bun.file(pki.ca.cert).text();
  const stop = async () => {
    pebble.kill();
    chall.kill();
    await Promise.all([pebble.exited, chall.exited]);
    rmSync(dir, { recursive: true, force: true });
    if (!o.pki) pki.remove();
  };
  for (let i = 0;; i++) {
    try {
      const r = await fetch(directory, { tls: { ca } });
      if (r.ok) break;
    } catch {
      // not up yet
    }
    if (i > 100 || pebble.exitCode !== null) {
      await stop();
      throw new Error(`pebble did not start: ${text}`);
    }
    await Bun.sleep(50);
  }
  return { directory, trustedCa: pki.ca.cert, log: () => text, stop };
}
