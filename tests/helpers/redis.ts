/**
 * A real redis-server (Debian's package, installed here when missing) on a free loopback port,
 * without persistence. `kill()` stops it hard (SIGKILL, as a crash would) and `start()` brings it
 * back on the same port, for outage tests; `pause()`/`resume()` (SIGSTOP/SIGCONT) make it slow
 * instead of gone. `startSentinel()` puts a Sentinel in front of one.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closedPort } from "./backends.ts";
import { run } from "./tls.ts";

export async function ensureRedis(): Promise<void> {
  const has = async () => (await run(["sh", "-c", "command -v redis-server"])).code === 0;
  if (await has()) return;
  let r = await run(["apt-get", "install", "-y", "redis-server"]);
  if (r.code !== 0) {
    await run(["apt-get", "update"]);
    r = await run(["apt-get", "install", "-y", "redis-server"]);
  }
  if (!(await has())) throw new Error(`redis-server is not installed and apt-get install -y redis-server failed:\n${r.stderr}`);
}

export interface TestRedis {
  readonly port: number;
  readonly url: string;
  /** Start (again) on the same port; resolves once it answers PING. */
  start(): Promise<void>;
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
  pause(): void;
  resume(): void;
  /** Run a redis-cli command against it. */
  cli(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  await ensureRedis();
  const port = closedPort();
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  const cli = async (...args: string[]) => (await run(["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args])).stdout.trim();
  const redis: TestRedis = {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async start() {
      proc = Bun.spawn(
        ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"],
        { stdout: "pipe", stderr: "pipe" },
      );
      const deadline = Date.now() + 10_000;
      while ((await cli("PING").catch(() => "")) !== "PONG") {
        if (Date.now() > deadline || proc.exitCode !== null) {
          const out = await new Response(proc.stdout as ReadableStream).text().catch(() => "");
          throw new Error(`redis-server on port ${port} did not start: ${out.slice(-2000)}`);
        }
        await Bun.sleep(20);
      }
    },
    async kill() {
      if (!proc) return;
      proc.kill("SIGKILL");
      await proc.exited;
      proc = undefined;
    },
    pause: () => void proc?.kill("SIGSTOP"),
    resume: () => void proc?.kill("SIGCONT"),
    cli,
    async stop() {
      if (!proc) return;
      proc.kill("SIGCONT");
      await redis.kill();
    },
  };
  await redis.start();
  return redis;
}

export interface TestSentinel {
  readonly port: number;
  /** The store URL for the master it watches: `redis+sentinel://127.0.0.1:PORT/NAME/0`. */
  readonly url: string;
  stop(): Promise<void>;
}

/** A Sentinel (redis-server --sentinel) watching `master` as `name`; resolves once it knows it. */
export async function startSentinel(master: TestRedis, name = "mymaster"): Promise<TestSentinel> {
  const port = closedPort();
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-sentinel-"));
  const conf = join(dir, "sentinel.conf");
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\nsentinel monitor ${name} 127.0.0.1 ${master.port} 1\n`);
  const proc = Bun.spawn(["redis-server", conf, "--sentinel"], { stdout: "ignore", stderr: "ignore" });
  const ask = async () =>
    (await run(["redis-cli", "-h", "127.0.0.1", "-p", String(port), "SENTINEL", "get-master-addr-by-name", name])).stdout;
  const deadline = Date.now() + 10_000;
  while (!(await ask().catch(() => "")).includes(String(master.port))) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`redis sentinel on port ${port} did not start`);
    await Bun.sleep(20);
  }
  return {
    port,
    url: `redis+sentinel://127.0.0.1:${port}/${name}/0`,
    async stop() {
      proc.kill("SIGKILL");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestCluster {
  /** The store URL: `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`. */
  readonly url: string;
  readonly ports: readonly number[];
  stop(): Promise<void>;
}

/** A Redis Cluster of three masters (no replicas) on free loopback ports, all slots assigned. */
export async function startCluster(): Promise<TestCluster> {
  await ensureRedis();
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-cluster-"));
  const ports = [closedPort(), closedPort(), closedPort()];
  const procs = ports.map((port) =>
    Bun.spawn([
      "redis-server",
      ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      ...["--cluster-enabled", "yes", "--cluster-port", String(closedPort()), "--cluster-config-file", join(dir, `nodes-${port}.conf`)],
    ], { stdout: "ignore", stderr: "ignore" })
  );
  const stop = async () => {
    for (const p of procs) p.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const cli = async (port: number, ...args: string[]) =>
      (await run(["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args])).stdout;
    const deadline = Date.now() + 10_000;
    for (const port of ports) {
      while (!(await cli(port, "PING").catch(() => "")).includes("PONG")) {
        if (Date.now() > deadline) throw new Error(`redis-server (cluster) on port ${port} did not start`);
        await Bun.sleep(20);
      }
    }
    const created = await run(["redis-cli", "--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-yes"]);
    if (created.code !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    while (!(await cli(ports[0]!, "CLUSTER", "INFO")).includes("cluster_state:ok")) {
      if (Date.now() > deadline + 10_000) throw new Error("the cluster did not reach cluster_state:ok");
      await Bun.sleep(50);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`, ports, stop };
}
