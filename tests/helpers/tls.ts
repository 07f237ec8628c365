/**
 * TLS for tests: certificates made with openssl (Debian's) in a temp folder, clients over
 * node:tls that choose their SNI, and Fulcrum started in-process from a config file in that
 * folder (so relative certificate paths resolve as they would for an operator).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { isIP } from "node:net";
import { parseConfig } from "../../core/config/load.ts";
import { bunRuntime } from "../../core/runtime/bun.ts";
import { startServer, type RunningServer } from "../../core/proxy/server.ts";
import { startObservability, type Observability } from "../../core/admin/observability.ts";
import { builtinRegistry } from "../../main.ts";
import { captureLogs } from "./fulcrum.ts";
import type { LogRecord } from "@logtape/logtape";

/** Run a command to completion without blocking the event loop (Fulcrum runs in this process). */
export async function run(cmd: string[], stdin = ""): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
}

export interface Pair {
  readonly cert: string;
  readonly key: string;
}

/** A temp folder with a test CA in it; `leaf()` makes certificates signed by it. */
export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), "fulcrum-tls-"));
  readonly ca: Pair;
  #serial = 0;
  constructor(readonly name = "Fulcrum Test CA") {
    this.ca = { cert: join(this.dir, "ca.pem"), key: join(this.dir, "ca.key") };
    openssl(
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
      ]
        .concat(["-subj", `/CN=${name}`]),
      this.dir,
    );
  }

  /**
   * A certificate for `names` (SAN DNS names; none: a certificate without SAN), signed by the CA.
   * `days` -1 makes an expired one. `client` adds clientAuth usage (mTLS).
   */
  leaf(file: string, names: readonly string[], o: { days?: number; client?: boolean } = {}): Pair {
    const n = ++this.#serial;
    const pair = { cert: join(this.dir, `${file}.pem`), key: join(this.dir, `${file}.key`) };
    const cn = names[0] ?? file;
    openssl([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      pair.key,
      "-out",
      `${file}.csr`,
      "-subj",
      `/CN=${cn}`,
    ], this.dir);
    const ext = [
      names.length ? `subjectAltName=${names.map((x) => (isIP(x) ? `IP:${x}` : `DNS:${x}`)).join(",")}` : "",
      o.client ? "extendedKeyUsage=clientAuth" : "",
    ]
      .filter(Boolean)
      .join("\n");
    writeFileSync(join(this.dir, `${file}.ext`), `${ext}\n`);
    openssl(
      ["x509", "-req", "-in", `${file}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", String(1000 + n), "-out", pair.cert]
        .concat(["-days", String(o.days ?? 30), "-extfile", `${file}.ext`]),
      this.dir,
    );
    return pair;
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  write(name: string, text: string): string {
    const p = join(this.dir, name);
    writeFileSync(p, text);
    return p;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Handshake {
  /** The server certificate's subject CN (undefined when the handshake failed). */
  cn?: string;
  protocol?: string | null;
  reused?: boolean;
  session?: Buffer;
  error?: string;
}

/** Open a TLS connection (SNI `servername`, none when undefined), read the certificate, close. */
export function handshake(port: number, servername: string | undefined, o: tls.ConnectionOptions = {}): Promise<Handshake> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...(servername ? { servername } : {}), ...o }, () => {
      const out: Handshake = { cn: String(s.getPeerCertificate().subject?.CN), protocol: s.getProtocol(), reused: s.isSessionReused() };
      s.end();
      resolve(out);
    });
    s.setTimeout(5000, () => s.destroy(new Error("client timeout")));
    s.on("error", (e) => resolve({ error: e.message }));
  });
}

export interface HttpsResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  cn: string | undefined;
}

/**
 * A keep-alive HTTPS client on one connection: requests one after another (no pipelining),
 * responses read by Content-Length or chunked.
 */
export class HttpsConn {
  #socket: tls.TLSSocket;
  #buf = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  #closed: Error | undefined;
  readonly ready: Promise<void>;
  constructor(port: number, servername: string | undefined, o: tls.ConnectionOptions = {}) {
    this.#socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...(servername ? { servername } : {}), ...o });
    this.ready = new Promise((resolve, reject) => {
      this.#socket.once("secureConnect", () => resolve());
      this.#socket.once("error", reject);
    });
    this.#socket.on("data", (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#waiter?.();
    });
    const done = (e?: Error) => {
      this.#closed ??= e ?? new Error("connection closed");
      this.#waiter?.();
    };
    this.#socket.on("close", () => done());
    this.#socket.on("error", (e) => done(e));
  }

  get cn(): string | undefined {
    const cn = this.#socket.getPeerCertificate()?.subject?.CN;
    return cn === undefined ? undefined : String(cn);
  }

  async request(path: string, headers: Record<string, string> = {}, host = "example.test"): Promise<HttpsResponse> {
    await this.ready;
    const lines = Object.entries({ host, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    this.#socket.write(`GET ${path} HTTP/1.1\r\n${lines}\r\n`);
    for (;;) {
      const r = this.#parse();
      if (r) return r;
      if (this.#closed) throw this.#closed;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
      this.#waiter = undefined;
    }
  }

  #parse(): HttpsResponse | undefined {
    const end = this.#buf.indexOf("\r\n\r\n");
    if (end < 0) return undefined;
    const head = this.#buf.toString("latin1", 0, end).split("\r\n");
    const status = Number(head[0]!.split(" ")[1]);
    const headers: Record<string, string> = {};
    for (const l of head.slice(1)) {
      const c = l.indexOf(":");
      headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
    }
    let bodyEnd: number;
    let body: string;
    if (headers["transfer-encoding"] === "chunked") {
      let p = end + 4;
      body = "";
      for (;;) {
        const nl = this.#buf.indexOf("\r\n", p);
        if (nl < 0) return undefined;
        const size = parseInt(this.#buf.toString("latin1", p, nl), 16);
        if (this.#buf.length < nl + 2 + size + 2) return undefined;
        body += this.#buf.toString("utf8", nl + 2, nl + 2 + size);
        p = nl + 2 + size + 2;
        if (size === 0) break;
      }
      bodyEnd = p;
    } else {
      const len = Number(headers["content-length"] ?? 0);
      if (this.#buf.length < end + 4 + len) return undefined;
      body = this.#buf.toString("utf8", end + 4, end + 4 + len);
      bodyEnd = end + 4 + len;
    }
    this.#buf = this.#buf.subarray(bodyEnd);
    return { status, headers, body, cn: this.cn };
  }

  close(): void {
    this.#socket.end();
  }
}

/** One HTTPS request on a fresh connection. */
export async function httpsGet(
  port: number,
  servername: string | undefined,
  path = "/",
  o: tls.ConnectionOptions & { headers?: Record<string, string>; host?: string } = {},
): Promise<HttpsResponse> {
  const { headers, host, ...tlsOptions } = o;
  const c = new HttpsConn(port, servername, tlsOptions);
  try {
    return await c.request(path, headers, host ?? servername ?? "example.test");
  } finally {
    c.close();
  }
}

export interface TlsFulcrum {
  readonly server: RunningServer;
  readonly obs: Observability;
  readonly records: LogRecord[];
  /** The port of listener `i` (in `listen` order). */
  port(i: number): number;
  readonly adminUrl: string | undefined;
  /** Access-log records' properties. */
  access(): Record<string, unknown>[];
  /** Log records at `level` whose message contains `text`. */
  logs(text: string, level?: string): LogRecord[];
  stop(): Promise<void>;
}

/** Write `yaml` as `fulcrum.yaml` in `dir` and serve it in this process (reload reads the file again). */
export async function startTlsFulcrum(dir: string, yaml: string): Promise<TlsFulcrum> {
  const registry = builtinRegistry();
  const file = join(dir, "fulcrum.yaml");
  writeFileSync(file, yaml);
  const load = async () => {
    const text = await Bun.file(file).text();
    const c = parseConfig(text, { file, env: (n) => process.env[n], strategyNames: registry.strategyNames() });
    c.admin.listen ??= { hostname: "127.0.0.1", port: 0 };
    return c;
  };
  const config = await load();
  const { records, logging } = await captureLogs(config.log.access_log);
  const obs = await startObservability(bunRuntime, config, {
    logging,
    serviceVersion: "0.0.0-test",
    env: () => undefined,
    flushTimeoutMs: 1000,
  });
  const server = await startServer(bunRuntime, config, {
    registry,
    logging,
    observer: obs.observer,
    metrics: obs.metrics,
    beforeListen: () => obs.listen(),
    loadConfig: load,
  });
  obs.attach(server);
  return {
    server,
    obs,
    records,
    port: (i) => server.listeners[i]!.port,
    adminUrl: obs.admin?.url,
    access: () => records.filter((r) => r.category.join(".") === "fulcrum.access").map((r) => r.properties),
    logs: (text, level) =>
      records.filter((r) => (level === undefined || r.level === level) && String(r.rawMessage ?? r.message.join("")).includes(text)),
    stop: async () => {
      obs.draining();
      await server.shutdown();
      await obs.close();
    },
  };
}
