// Rotating the access log as logrotate does for nginx (rename, then SIGUSR1; no copytruncate),
// and through the admin API's POST /logs/reopen, while requests keep coming: every request is in
// exactly one file, on a whole line of its own.
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { startBackend } from "../helpers/backends.ts";
import { spawnRun, tempDir } from "../helpers/plugins.ts";

setDefaultTimeout(60_000);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function start(yaml: string, workers: number) {
  const backend = startBackend("b");
  cleanups.push(() => backend.stop());
  const dir = tempDir("fulcrum-rotate-");
  const log = join(dir.dir, "access.log");
  const file = dir.write(
    "fulcrum.yaml",
    `listen: 127.0.0.1:0\nworkers: ${workers}\nadmin: { listen: 127.0.0.1:0 }\npools:\n  web:\n    backends: ["${backend.url}"]\n` +
      `log: { access_log_file: ${log} }\n${yaml}`,
  );
  const child = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
  cleanups.push(async () => {
    child.proc.kill("SIGKILL");
    await child.closed;
  });
  const admin = JSON.parse(await child.waitFor('"message":"admin API listening"')).url as string;
  for (let from = 0, seen = 0; seen < (workers > 1 ? workers : 0); seen++) {
    from = child.lines.indexOf(await child.waitFor('"message":"worker listening"', from)) + 1;
  }
  return { child, dir: dir.dir, log, admin };
}

/**
 * Requests to /r/0, /r/1, … from `concurrency` loops until stopped, each on a new connection
 * (spread over the workers).
 */
function load(url: string, concurrency: number) {
  let next = 0;
  let done = 0;
  let stopped = false;
  const statuses: number[] = [];
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stopped) {
      const n = next++;
      const r = await fetch(`${url}/r/${n}`, { headers: { connection: "close" } });
      await r.arrayBuffer();
      statuses.push(r.status);
      done++;
    }
  });
  return {
    /** Stop sending; resolves with every status once the requests in flight are answered. */
    stop: () => {
      stopped = true;
      return Promise.all(loops).then(() => statuses);
    },
    done: () => done,
    /** Resolves once `n` requests have been answered. */
    async reached(n: number) {
      const until = Date.now() + 30_000;
      while (done < n) {
        if (Date.now() > until) throw new Error(`only ${done} of ${n} requests answered`);
        await Bun.sleep(5);
      }
    },
  };
}

/** The lines of each file once they hold `total` lines together (the writers batch for 50 ms). */
async function linesOf(files: string[], total: number): Promise<string[][]> {
  const read = () => files.map((f) => (existsSync(f) ? readFileSync(f, "utf8") : ""));
  const until = Date.now() + 10_000;
  let texts = read();
  while (texts.join("").split("\n").length - 1 < total && Date.now() < until) {
    await Bun.sleep(20);
    texts = read();
  }
  for (const t of texts) expect(t === "" || t.endsWith("\n")).toBe(true); // no line cut at a file's end
  return texts.map((t) => t.split("\n").filter((l) => l !== ""));
}

/** Every request's path exactly once over all files, every line a whole JSON object. */
function expectEachOnce(files: string[][], total: number) {
  const seen = new Map<string, number>();
  for (const lines of files) {
    for (const line of lines) {
      const record = JSON.parse(line) as { path: string; message: string };
      expect(record.message).toBe("access");
      seen.set(record.path, (seen.get(record.path) ?? 0) + 1);
    }
  }
  expect(seen.size).toBe(total);
  for (let i = 0; i < total; i++) expect(seen.get(`/r/${i}`)).toBe(1);
}

describe("access log rotation under load", () => {
  test("workers: 2 — logrotate renames and sends SIGUSR1, then POST /logs/reopen: no line lost, none split", async () => {
    const { child, dir, log, admin } = await start("", 2);
    const traffic = load(child.url, 8);

    // logrotate as an operator runs it for nginx: rename (no copytruncate), then signal the primary.
    await traffic.reached(800);
    const conf = join(dir, "logrotate.conf");
    await Bun.write(conf, `${log} {\n  rotate 5\n  missingok\n  nocompress\n  postrotate\n    kill -USR1 ${child.pid}\n  endscript\n}\n`);
    const rotate = Bun.spawn(["logrotate", "-f", "-s", join(dir, "logrotate.state"), conf], { stdout: "pipe", stderr: "pipe" });
    expect(await rotate.exited).toBe(0);
    expect(existsSync(`${log}.1`)).toBe(true);
    const reopened = await child.waitFor('"message":"reopened the access log"');

    // The admin API's way, for a host where sending a signal is awkward: answered once every worker reopened.
    await traffic.reached(traffic.done() + 800);
    renameSync(log, `${log}.admin`);
    const r = await fetch(`${admin}/logs/reopen`, { method: "POST" });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: "reopened", access_log_file: log });
    await child.waitFor('"message":"reopened the access log"', child.lines.indexOf(reopened) + 1);

    await traffic.reached(traffic.done() + 800);
    const statuses = await traffic.stop();
    const total = statuses.length;
    expect(statuses.filter((s) => s === 200).length).toBe(total);
    const files = await linesOf([`${log}.1`, `${log}.admin`, log], total);
    console.info(`${total} requests; lines: ${files.map((f) => f.length).join(" + ")} (rotated, rotated by the admin API, current)`);
    expectEachOnce(files, total);
    // Each file got lines (the requests sent after each reopen, at least), and both workers wrote to the current one.
    for (const f of files) expect(f.length).toBeGreaterThan(0);
    expect(files[2]!.length).toBeGreaterThanOrEqual(800 - 8);
    expect(new Set(files[2]!.map((l) => JSON.parse(l).worker)).size).toBe(2);
  });

  test("one process: SIGUSR1 after a rename sends the next lines to a new file; POST /logs/reopen too", async () => {
    const { child, log, admin } = await start("", 1);
    const traffic = load(child.url, 4);
    await traffic.reached(300);
    renameSync(log, `${log}.1`);
    child.proc.kill("SIGUSR1");
    await child.waitFor('"message":"reopened the access log"');
    await traffic.reached(traffic.done() + 300);
    renameSync(log, `${log}.2`);
    expect((await fetch(`${admin}/logs/reopen`, { method: "POST" })).status).toBe(200);
    await traffic.reached(traffic.done() + 300);
    const statuses = await traffic.stop();
    const files = await linesOf([`${log}.1`, `${log}.2`, log], statuses.length);
    expectEachOnce(files, statuses.length);
    expect(files[1]!.length).toBeGreaterThanOrEqual(300 - 4);
    expect(files[2]!.length).toBeGreaterThanOrEqual(300 - 4);
    // The process is still serving after the signal (SIGUSR1 does not stop it, as it would by default).
    expect((await fetch(`${child.url}/after`)).status).toBe(200);
  });
});
