// HTTP/2 flow control end to end: Fulcrum in its own process (so that its RSS is measured alone) with
// h2c; a slow reader must not make it buffer a large response, nor a large upload.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { rssOf, spawnFulcrum, type Child } from "../helpers/fulcrum.ts";
import { generated } from "../helpers/streams.ts";
import { h2connect, run } from "../helpers/h2.ts";

/**
 * Large bodies: at tens of MB/s Bun's per-read buffers wait for the collector, ~30–50 MB of them at
 * the peak whatever the size, so only a body well above that tells such garbage from buffering
 * (which would grow by the body's size).
 */
const SIZE = 200 * 1024 * 1024;
const UPLOAD = SIZE;
const CHUNK = new Uint8Array(64 * 1024).fill(97);
/** RSS growth allowed while a body passes: under half its size. */
const LIMIT = 96 * 1024 * 1024;
const UPLOAD_LIMIT = LIMIT;

let backend: TestBackend;
let fulcrum: Child;
let uploaded = 0;
let dir = "";

beforeAll(async () => {
  backend = startBackend("big", async (req) => {
    if (req.method === "POST") {
      uploaded = 0;
      // A backend slower than the client (about 1 MiB every 5 ms): the upload is held back by flow
      // control, so a proxy that buffered what the backend has not read yet would grow by the body's size.
      let step = 0;
      for await (const c of req.body!) {
        uploaded += c.byteLength;
        step += c.byteLength;
        if (step >= 1 << 20 && req.headers.get("x-slow") !== null) {
          step = 0;
          await Bun.sleep(5);
        }
      }
      return new Response(String(uploaded));
    }
    return new Response(generated(SIZE), { headers: { "content-type": "application/octet-stream" } });
  });
  dir = mkdtempSync(join(tmpdir(), "fulcrum-h2flow-"));
  const file = join(dir, "fulcrum.yaml");
  writeFileSync(
    file,
    `listen: { address: 127.0.0.1:0, h2c: true }\nworkers: 1\npools:\n  web:\n    backends: ["${backend.url}"]\nlog: { access_log: false }\n`,
  );
  fulcrum = await spawnFulcrum(["run", "--config", file]);
  // Warm up (JIT, the HTTP/2 code, the upstream pool) so that the baseline includes them.
  const s = await h2connect(fulcrum.url);
  for (let i = 0; i < 20; i++) {
    await new Promise<void>((r) => {
      const req = s.request({ ":method": "POST", ":path": "/" });
      req.on("data", () => {});
      req.on("end", () => r());
      req.end("x");
    });
  }
  s.close();
});

afterAll(async () => {
  fulcrum?.kill("SIGKILL");
  await fulcrum?.exited;
  await backend?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Peak RSS of the Fulcrum process while `work` runs, sampled every 20 ms. */
async function peakRss<T>(work: Promise<T>): Promise<{ result: T; peak: number; before: number }> {
  const pid = fulcrum.proc.pid;
  const before = rssOf(pid);
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
  try {
    const result = await work;
    return { result, peak: Math.max(peak, rssOf(pid)), before };
  } finally {
    clearInterval(timer);
  }
}

describe("HTTP/2 flow control end to end", () => {
  test("a 200 MB download to a slow reader: Fulcrum's RSS stays bounded, every byte arrives", async () => {
    const s = await h2connect(fulcrum.url);
    try {
      const download = new Promise<number>((resolve, reject) => {
        const req = s.request({ ":path": "/big" });
        let got = 0;
        let burst = 0;
        req.on("data", (d: Buffer) => {
          got += d.length;
          burst += d.length;
          // Read ~1 MiB, then stop reading (no WINDOW_UPDATE goes out) for 20 ms: under ~50 MB/s.
          if (burst >= 1024 * 1024) {
            burst = 0;
            req.pause();
            setTimeout(() => req.resume(), 20);
          }
        });
        req.on("end", () => resolve(got));
        req.on("error", reject);
      });
      const { result, peak, before } = await peakRss(download);
      expect(result).toBe(SIZE);
      console.info(`h2 slow download: RSS ${(before / 2 ** 20).toFixed(0)} MB → peak ${(peak / 2 ** 20).toFixed(0)} MB`);
      expect(peak - before).toBeLessThan(LIMIT);
    } finally {
      s.close();
    }
  }, 60_000);

  test("a 200 MB upload to a slow backend streams through with RSS bounded", async () => {
    const s = await h2connect(fulcrum.url);
    try {
      const upload = new Promise<string>((resolve, reject) => {
        const req = s.request({ ":method": "POST", ":path": "/up", "x-slow": "1" }, { endStream: false });
        let answer = "";
        req.on("data", (d: Buffer) => (answer += d.toString()));
        req.on("end", () => resolve(answer));
        req.on("error", reject);
        let sent = 0;
        const write = () => {
          while (sent < UPLOAD) {
            sent += CHUNK.length;
            if (!req.write(CHUNK)) return void req.once("drain", write);
          }
          req.end();
        };
        write();
      });
      const { result, peak, before } = await peakRss(upload);
      expect(result).toBe(String(UPLOAD));
      expect(uploaded).toBe(UPLOAD);
      console.info(`h2 upload: RSS ${(before / 2 ** 20).toFixed(0)} MB → peak ${(peak / 2 ** 20).toFixed(0)} MB`);
      expect(peak - before).toBeLessThan(UPLOAD_LIMIT);
    } finally {
      s.close();
    }
  }, 60_000);

  test("curl --http2-prior-knowledge downloads the 200 MB whole", async () => {
    const r = await run([
      "curl",
      "-s",
      "--http2-prior-knowledge",
      "-o",
      "/dev/null",
      "-w",
      "%{http_version} %{size_download}",
      `${fulcrum.url}/big`,
    ]);
    expect(r.stdout).toBe(`2 ${SIZE}`);
  }, 60_000);
});
