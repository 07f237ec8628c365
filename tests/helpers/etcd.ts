/**
 * A real etcd server (Debian's etcd-server) for the discovery tests: its own data folder in a
 * temp dir, client and peer URLs on free loopback ports, stopped by its PID. Keys are written
 * through the same v3 JSON gateway the example plugin reads.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Etcd {
  /** The client URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly pid: number;
  put(key: string, value: string): Promise<void>;
  del(key: string): Promise<void>;
  /** Stop the server (SIGTERM, then SIGKILL) and remove its data. */
  stop(): Promise<void>;
  /** Stop the server, keeping its data. */
  halt(): Promise<void>;
  /** Start it again after {@link Etcd.halt}: same address, same data. */
  resume(): Promise<void>;
}

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

export async function startEtcd(): Promise<Etcd> {
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-etcd-"));
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const args = [
    "etcd",
    "--name=test",
    `--data-dir=${join(dir, "data")}`,
    `--listen-client-urls=${url}`,
    `--advertise-client-urls=${url}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=test=${peerUrl}`,
    "--log-level=error",
  ];
  let proc: ReturnType<typeof spawn> | undefined;
  let removed = false;
  const halt = async () => {
    const p = proc;
    proc = undefined;
    if (!p) return;
    p.kill("SIGTERM");
    const killer = setTimeout(() => p.kill("SIGKILL"), 3_000);
    await p.exited;
    clearTimeout(killer);
  };
  const stop = async () => {
    await halt();
    if (!removed) rmSync(dir, { recursive: true, force: true });
    removed = true;
  };
  const call = async (path: string, body: unknown) => {
    const r = await fetch(`${url}${path}`, { method: "POST", body: JSON.stringify(body), signal: AbortSignal.timeout(5_000) });
    if (!r.ok) throw new Error(`etcd ${path}: ${r.status} ${await r.text()}`);
  };
  const resume = async () => {
    const p = (proc = spawn(args));
    // Ready once a read through the gateway answers (bounded).
    const end = Date.now() + 15_000;
    for (;;) {
      if (p.exitCode !== null) {
        const err = await new Response(p.stderr).text();
        await stop();
        throw new Error(`etcd exited with ${p.exitCode}: ${err.slice(-2000)}`);
      }
      try {
        await call("/v3/kv/range", { key: b64("/") });
        return;
      } catch {
        if (Date.now() > end) {
          await stop();
          throw new Error(`etcd did not answer on ${url} within 15s`);
        }
        await Bun.sleep(50);
      }
    }
  };
  await resume();
  return {
    url,
    get pid() {
      return proc?.pid ?? 0;
    },
    put: (key, value) => call("/v3/kv/put", { key: b64(key), value: b64(value) }),
    del: (key) => call("/v3/kv/deleterange", { key: b64(key) }),
    stop,
    halt,
    resume,
  };
}

function spawn(args: string[]) {
  return Bun.spawn(args, { stdout: "ignore", stderr: "pipe" });
}
