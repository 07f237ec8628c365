import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { rssOf, spawnFulcrum, type Child } from "../helpers/fulcrum.ts";
import { generated } from "../helpers/streams.ts";

// Fulcrum runs as its own process here so that its RSS is measured alone.
const SIZE = 200 * 1024 * 1024;
const LIMIT = 64 * 1024 * 1024;

async function drain(body: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const chunk of body) n += chunk.byteLength;
  return n;
}

/** Peak RSS of `pid` while `work` runs, sampled every 20 ms. */
async function peakRss<T>(pid: number, work: Promise<T>): Promise<{ result: T; peak: number }> {
  let peak = rssOf(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
  try {
    const result = await work;
    return { result, peak: Math.max(peak, rssOf(pid)) };
  } finally {
    clearInterval(timer);
  }
}

let backend: TestBackend;
let fulcrum: Child;
let uploaded = 0;
let dir = "";

beforeAll(async () => {
  backend = startBackend("big", async (req) => {
    if (req.method === "POST") {
      uploaded = await drain(req.body!);
      return new Response(String(uploaded));
    }
    return new Response(generated(SIZE), { headers: { "content-type": "application/octet-stream" } });
  });
  dir = mkdtempSync(join(tmpdir(), "fulcrum-stream-"));
  const file = join(dir, "fulcrum.yaml");
  // workers: 1 — the RSS measured must be the process that streams the bodies (with workers it would
  // be the primary, which serves no traffic).
  writeFileSync(file, `listen: 127.0.0.1:0\nworkers: 1\npools:\n  web:\n    backends: ["${backend.url}"]\nlog: { access_log: false }\n`);
  fulcrum = await spawnFulcrum(["run", "--config", file]);
  // Warm up so the baseline includes the JIT and connection pool.
  for (let i = 0; i < 20; i++) await (await fetch(`${fulcrum.url}/`, { method: "POST", body: "x" })).text();
});

afterAll(async () => {
  fulcrum?.kill("SIGKILL");
  await fulcrum?.exited;
  await backend?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("streaming large bodies", () => {
  test("a 200 MB download streams through with RSS growing < 64 MB", async () => {
    const before = rssOf(fulcrum.proc.pid);
    const { result, peak } = await peakRss(fulcrum.proc.pid, fetch(fulcrum.url).then((r) => drain(r.body!)));
    expect(result).toBe(SIZE);
    console.info(`download: RSS ${(before / 2 ** 20).toFixed(0)} MB → peak ${(peak / 2 ** 20).toFixed(0)} MB`);
    expect(peak - before).toBeLessThan(LIMIT);
  });

  test("a 200 MB upload streams through with RSS growing < 64 MB", async () => {
    const before = rssOf(fulcrum.proc.pid);
    const { result, peak } = await peakRss(
      fulcrum.proc.pid,
      fetch(fulcrum.url, { method: "POST", body: generated(SIZE), duplex: "half" } as RequestInit).then((r) => r.text()),
    );
    expect(result).toBe(String(SIZE));
    expect(uploaded).toBe(SIZE);
    console.info(`upload: RSS ${(before / 2 ** 20).toFixed(0)} MB → peak ${(peak / 2 ** 20).toFixed(0)} MB`);
    expect(peak - before).toBeLessThan(LIMIT);
  });
});
