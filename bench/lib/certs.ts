// Test certificates for the side-by-side HTTPS and HTTP/2 benches (bench/tls.ts, bench/h2.ts):
// ECDSA P-256 keys made with openssl in a run's work dir, valid for 3 days.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Run openssl in `dir`; throws with its stderr if it fails. */
export function openssl(dir: string, args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** A self-signed certificate `dir/NAME.pem` with its key `dir/NAME.key`; `san` as in "DNS:localhost,IP:127.0.0.1". */
export function selfSigned(dir: string, name: string, commonName: string, san?: string): void {
  openssl(dir, [
    "req",
    "-x509",
    ...P256,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-days",
    "3",
    "-subj",
    `/CN=${commonName}`,
    ...(san === undefined ? [] : ["-addext", `subjectAltName=${san}`]),
  ]);
}

/** A test CA (`dir/ca.pem`, `ca.key`) and, signed by it, one certificate per name: `NAME.pem`, `NAME.key`, for DNS:NAME. */
export function caSigned(dir: string, names: string[]): void {
  selfSigned(dir, "ca", "bench CA");
  for (const name of names) {
    openssl(dir, ["req", ...P256, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name}\n`);
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "3",
      "-extfile",
      `${name}.ext`,
    ]);
  }
}
