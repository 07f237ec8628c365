import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { createCompress, mergeVary, negotiate } from "../../core/middleware/compress.ts";
import type { PluginApi } from "../../core/plugins/api.ts";
import { startBackend, type TestBackend } from "../helpers/backends.ts";
import { rssOf, spawnFulcrum, type Child } from "../helpers/fulcrum.ts";
import { testScope } from "../helpers/scope.ts";

const api: PluginApi = {
  strategy: () => {
    throw new Error("unused");
  },
  key: () => {
    throw new Error("unused");
  },
  log: { debug() {}, info() {}, warn() {}, error() {} },
};

// A text body that compresses well but not to nothing: 64 KiB of numbered lines.
const TEXT = Array.from({ length: 4000 }, (_, i) => `line ${i}: the quick brown fox jumps over the lazy dog\n`).join("");

const decode: Record<string, (b: Buffer) => Buffer> = {
  gzip: (b) => zlib.gunzipSync(b),
  br: (b) => zlib.brotliDecompressSync(b),
  zstd: (b) => zlib.zstdDecompressSync(b),
  deflate: (b) => zlib.inflateSync(b),
};

describe("compress: negotiation", () => {
  test("the highest q-value wins; equal q-values go to the server's order", () => {
    const order = ["zstd", "br", "gzip"] as const;
    expect(negotiate("gzip, deflate, br, zstd", [...order])).toBe("zstd");
    expect(negotiate("gzip, br", [...order])).toBe("br");
    expect(negotiate("gzip;q=1, br;q=0.5", [...order])).toBe("gzip");
    expect(negotiate("gzip, br", ["gzip", "br"])).toBe("gzip");
  });

  test("q=0 refuses a coding, also through *; a client naming none of ours gets none", () => {
    expect(negotiate("br;q=0, gzip", ["br", "gzip"])).toBe("gzip");
    expect(negotiate("*;q=0", ["br", "gzip"])).toBeUndefined();
    expect(negotiate("*", ["br", "gzip"])).toBe("br");
    expect(negotiate("*, br;q=0", ["br", "gzip"])).toBe("gzip");
    expect(negotiate("identity", ["zstd", "br", "gzip"])).toBeUndefined();
    expect(negotiate("x-gzip", ["gzip"])).toBe("gzip");
    expect(negotiate("GZIP ; Q=0.3", ["gzip"])).toBe("gzip");
  });

  test("Vary: Accept-Encoding is merged with what is there, never twice", () => {
    const h = new Headers();
    mergeVary(h);
    expect(h.get("vary")).toBe("Accept-Encoding");
    const origin = new Headers({ vary: "Origin" });
    mergeVary(origin);
    expect(origin.get("vary")).toBe("Origin, Accept-Encoding");
    const already = new Headers({ vary: "origin, accept-encoding" });
    mergeVary(already);
    expect(already.get("vary")).toBe("origin, accept-encoding");
    const star = new Headers({ vary: "*" });
    mergeVary(star);
    expect(star.get("vary")).toBe("*");
  });

  test("bad options are refused at start, naming the option and the value", () => {
    expect(() => createCompress({ typo: 1 } as never, api)).toThrow('unknown option "typo"');
    expect(() => createCompress({ types: ["text"] }, api)).toThrow('types: "text" is not a media type');
    expect(() => createCompress({ min_size: "lots" }, api)).toThrow("min_size must be a size");
    expect(() => createCompress({ encodings: ["lzma" as never] }, api)).toThrow('unknown encoding "lzma"');
    expect(() => createCompress({ level: { gzip: 10 } }, api)).toThrow("level.gzip must be a whole number from 1 to 9, got 10");
    expect(() => createCompress({ level: { br: 12 } }, api)).toThrow("level.br must be a whole number from 0 to 11");
  });
});

describe("compress: through the proxy", () => {
  const scope = testScope();
  let gate: (() => void) | undefined;
  let endlessCancelled = false;

  function backend(): TestBackend {
    return scope.backend("b", async (req) => {
      const path = new URL(req.url).pathname;
      const text = { "content-type": "text/plain; charset=utf-8" };
      switch (path) {
        case "/text":
          return new Response(TEXT, { headers: { ...text, etag: '"v1"', vary: "Origin", "accept-ranges": "bytes" } });
        case "/json":
          return Response.json({ items: TEXT.split("\n").slice(0, 500) });
        case "/gzipped":
          return new Response(zlib.gzipSync(TEXT), { headers: { ...text, "content-encoding": "gzip" } });
        case "/no-transform":
          return new Response(TEXT, { headers: { ...text, "cache-control": "public, no-transform" } });
        case "/2k":
          // Small enough to arrive with its head: the proxy has the whole body before the middleware run.
          return new Response(TEXT.slice(0, 2048), { headers: text });
        case "/small":
          return new Response("short", { headers: text });
        case "/small-stream":
          // No Content-Length: the middleware reads up to min_size to decide.
          return new Response(new ReadableStream({ start: (c) => (c.enqueue(new TextEncoder().encode("tiny")), c.close()) }), {
            headers: text,
          });
        case "/png":
          return new Response(new Uint8Array(4096).fill(7), { headers: { "content-type": "image/png" } });
        case "/events":
          return new Response(TEXT, { headers: { "content-type": "text/event-stream" } });
        case "/empty":
          return new Response(null, { status: 204, headers: text });
        case "/pieces": {
          // The second piece is sent only once the client has the first: a proxy that buffered
          // the body (or the encoder's output) would never deliver it.
          const piece = new TextEncoder().encode(TEXT.slice(0, 8192));
          const released = new Promise<void>((r) => (gate = r));
          let n = 0;
          return new Response(
            new ReadableStream({
              async pull(c) {
                if (n === 1) await released;
                if (n++ === 2) return c.close();
                c.enqueue(piece);
              },
            }),
            { headers: text },
          );
        }
        case "/endless": {
          // Never ends on its own: only a cancel from the proxy stops it.
          const piece = new TextEncoder().encode(TEXT.slice(0, 16384));
          return new Response(
            new ReadableStream({
              async pull(c) {
                await Bun.sleep(1);
                c.enqueue(piece);
              },
              cancel: () => void (endlessCancelled = true),
            }),
            { headers: text },
          );
        }
        default:
          return new Response("nope", { status: 404 });
      }
    });
  }

  async function start(options = "{}", extra = "") {
    const b = backend();
    return scope.fulcrum(`
listen: { address: 127.0.0.1:0, h2c: true }
pools:
  web:
    backends: ["${b.url}"]
routes:
  - match: { path: / }
    pool: web
    middleware:
      - compress: ${options}
${extra}`);
  }

  const get = (url: string, acceptEncoding: string | null, init: RequestInit = {}) =>
    fetch(url, {
      ...init,
      decompress: false,
      headers: acceptEncoding === null ? {} : { "accept-encoding": acceptEncoding },
    } as RequestInit);

  test("curl --compressed gets each encoding, decoded to the backend's bytes", async () => {
    const f = await start();
    for (const encoding of ["zstd", "br", "gzip"]) {
      const proc = Bun.spawn(["curl", "-sS", "--compressed", "-H", `Accept-Encoding: ${encoding}`, "-D", "-", `${f.url}/text`], {
        stdout: "pipe",
        stderr: "pipe",
      });
      const out = await new Response(proc.stdout).text();
      expect(await proc.exited).toBe(0);
      const split = out.indexOf("\r\n\r\n");
      const head = out.slice(0, split).toLowerCase();
      expect(head).toContain(`content-encoding: ${encoding}`);
      expect(head).toContain("transfer-encoding: chunked");
      expect(head).not.toContain("content-length");
      expect(out.slice(split + 4)).toBe(TEXT);
    }
  });

  test("over HTTP/2 (h2c) too: curl --http2-prior-knowledge --compressed decodes each encoding", async () => {
    const f = await start();
    for (const encoding of ["zstd", "br", "gzip"]) {
      const proc = Bun.spawn(
        ["curl", "-sS", "--http2-prior-knowledge", "--compressed", "-H", `Accept-Encoding: ${encoding}`, "-D", "-", `${f.url}/text`],
        { stdout: "pipe", stderr: "pipe" },
      );
      const out = await new Response(proc.stdout).text();
      expect(await proc.exited).toBe(0);
      const split = out.indexOf("\r\n\r\n");
      expect(out.slice(0, split)).toStartWith("HTTP/2 200");
      expect(out.slice(0, split).toLowerCase()).toContain(`content-encoding: ${encoding}`);
      expect(out.slice(split + 4)).toBe(TEXT);
    }
    const line = await waitForAccess(f.access, 3);
    expect(line).toMatchObject({ protocol: "2", status: 200 });
    expect(line.bytes as number).toBeLessThan(TEXT.length / 5);
  });

  test("a compressed response: smaller, weak ETag, Vary merged, no Content-Length or Accept-Ranges", async () => {
    const f = await start();
    for (const encoding of ["zstd", "br", "gzip"]) {
      const r = await get(`${f.url}/text`, "gzip, deflate, br, zstd".includes(encoding) ? encoding : "");
      const body = Buffer.from(await r.arrayBuffer());
      expect(r.headers.get("content-encoding")).toBe(encoding);
      expect(body.length).toBeLessThan(TEXT.length / 5);
      expect(decode[encoding]!(body).toString()).toBe(TEXT);
      expect(r.headers.get("etag")).toBe('W/"v1"');
      expect(r.headers.get("vary")).toBe("Origin, Accept-Encoding");
      expect(r.headers.get("content-length")).toBeNull();
      expect(r.headers.get("accept-ranges")).toBeNull();
    }
    // The browser's usual header: zstd first among equals (the default order).
    expect((await get(`${f.url}/text`, "gzip, deflate, br, zstd")).headers.get("content-encoding")).toBe("zstd");
    const json = await get(`${f.url}/json`, "gzip");
    expect(json.headers.get("content-encoding")).toBe("gzip");
    expect(JSON.parse(decode.gzip!(Buffer.from(await json.arrayBuffer())).toString()).items.length).toBe(500);
  });

  test("left alone: already encoded, no-transform, small, other types, HEAD, 204, a client that refuses", async () => {
    const f = await start();
    const gz = await get(`${f.url}/gzipped`, "gzip, br");
    expect(gz.headers.get("content-encoding")).toBe("gzip");
    expect(Buffer.from(await gz.arrayBuffer())).toEqual(zlib.gzipSync(TEXT));

    const plain = async (path: string, ae: string | null = "gzip, br, zstd", init?: RequestInit) => {
      const r = await get(`${f.url}${path}`, ae, init);
      expect(r.headers.get("content-encoding")).toBeNull();
      return { r, body: await r.text() };
    };
    expect((await plain("/no-transform")).body).toBe(TEXT);
    const small = await plain("/small");
    expect(small.body).toBe("short");
    expect(small.r.headers.get("vary")).toBe("Accept-Encoding");
    expect((await plain("/small-stream")).body).toBe("tiny");
    expect((await plain("/png")).r.headers.get("vary")).toBeNull();
    expect((await plain("/events")).body).toBe(TEXT);
    expect((await plain("/text", "identity")).body).toBe(TEXT);
    expect((await plain("/text", "gzip;q=0, br;q=0, zstd;q=0")).body).toBe(TEXT);
    expect((await plain("/text", null)).body).toBe(TEXT);

    const head = await plain("/text", "gzip", { method: "HEAD" });
    expect(head.body).toBe("");
    expect(head.r.headers.get("vary")).toBe("Origin, Accept-Encoding");
    expect(head.r.headers.get("content-length")).toBe(String(TEXT.length));

    const empty = await plain("/empty");
    expect(empty.r.status).toBe(204);
    expect(empty.body).toBe("");
  });

  test("types, min_size, encodings and level from the config", async () => {
    const f = await start("{ types: [application/json], min_size: 0, encodings: [gzip], level: { gzip: 1 } }");
    expect((await get(`${f.url}/text`, "gzip")).headers.get("content-encoding")).toBeNull();
    const json = await get(`${f.url}/json`, "br, gzip");
    expect(json.headers.get("content-encoding")).toBe("gzip");
    const body = Buffer.from(await json.arrayBuffer());
    // Level 1 is what was asked for: the same bytes zlib makes at level 1 (one flush per piece aside, the sizes match closely).
    const level9 = zlib.gzipSync(await (await get(`${f.url}/json`, null)).arrayBuffer(), { level: 9 }).length;
    expect(body.length).toBeGreaterThan(level9);
    expect((await get(`${f.url}/small`, "gzip")).headers.get("content-encoding")).toBeNull(); // text/plain is not listed
    expect((await get(`${f.url}/json`, "br")).headers.get("content-encoding")).toBeNull();
  });

  test("streams: the first compressed piece reaches the client before the backend sends the next", async () => {
    const f = await start();
    const r = await fetch(`${f.url}/pieces`, { headers: { "accept-encoding": "gzip" } });
    expect(r.headers.get("content-encoding")).toBe("gzip");
    // Bun's fetch decodes gzip as it arrives.
    const reader = r.body!.getReader();
    let got = 0;
    while (got < 8192) {
      const { value, done } = await reader.read();
      expect(done).toBe(false);
      got += value!.byteLength;
    }
    expect(got).toBe(8192);
    gate!();
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      got += value.byteLength;
    }
    expect(got).toBe(16384);
  });

  test("a client that leaves mid-body: the backend's body is cancelled and the request ends, logged with the bytes sent", async () => {
    const f = await start();
    const controller = new AbortController();
    const r = await fetch(
      `${f.url}/endless`,
      { headers: { "accept-encoding": "gzip" }, signal: controller.signal, decompress: false } as RequestInit,
    );
    expect(r.headers.get("content-encoding")).toBe("gzip");
    const reader = r.body!.getReader();
    let got = 0;
    while (got < 4096) got += (await reader.read()).value!.byteLength;
    controller.abort();
    const until = Date.now() + 5_000;
    while ((f.server.gateway.inflight() > 0 || !endlessCancelled) && Date.now() < until) await Bun.sleep(5);
    expect(f.server.gateway.inflight()).toBe(0);
    expect(endlessCancelled).toBe(true);
    const line = await waitForAccess(f.access, 1);
    expect(line).toMatchObject({ status: 200, path: "/endless", pool: "web" });
    expect(line.bytes as number).toBeGreaterThanOrEqual(got);
  });

  test("the access log has the compressed bytes sent, and the route's pool", async () => {
    const f = await start();
    const r = await get(`${f.url}/text`, "br");
    const sent = (await r.arrayBuffer()).byteLength;
    const line = await waitForAccess(f.access, 1);
    expect(line).toMatchObject({ status: 200, pool: "web", bytes: sent, path: "/text" });
    expect(sent).toBeLessThan(TEXT.length / 5);
    // A body that came whole with the backend's head: the line still waits for what the client got.
    const small = await get(`${f.url}/2k`, "gzip");
    expect(small.headers.get("content-encoding")).toBe("gzip");
    const smallSent = (await small.arrayBuffer()).byteLength;
    expect(smallSent).toBeLessThan(2048);
    expect(await waitForAccess(f.access, 2)).toMatchObject({ status: 200, bytes: smallSent, path: "/2k" });
  });
});

async function waitForAccess(access: () => Record<string, unknown>[], n: number): Promise<Record<string, unknown>> {
  const until = Date.now() + 5_000;
  while (access().length < n) {
    if (Date.now() > until) throw new Error(`expected ${n} access lines, got ${access().length}`);
    await Bun.sleep(5);
  }
  return access()[n - 1]!;
}

describe("compress: a 50 MB streamed response", () => {
  const SIZE = 50 * 1024 * 1024;
  const LIMIT = 48 * 1024 * 1024;
  let big: TestBackend;
  let fulcrum: Child;
  let dir = "";
  beforeAll(async () => {
    // Numbered lines (no two pieces alike, so no encoder can skip whole pieces), made 64 KiB at a
    // time as they are pulled.
    const utf8 = new TextEncoder();
    big = startBackend("big", () => {
      let sent = 0;
      let line = 0;
      return new Response(
        new ReadableStream({
          pull(c) {
            if (sent >= SIZE) return c.close();
            let text = "";
            while (text.length < 65_536) text += `${line++} the quick brown fox ${(line * 7919) % 10007} jumps over the lazy dog\n`;
            const piece = utf8.encode(text).subarray(0, Math.min(65_536, SIZE - sent));
            c.enqueue(piece);
            sent += piece.length;
          },
        }),
        { headers: { "content-type": "text/plain" } },
      );
    });
    dir = mkdtempSync(join(tmpdir(), "fulcrum-compress-"));
    const file = join(dir, "fulcrum.yaml");
    writeFileSync(
      file,
      `listen: 127.0.0.1:0\nworkers: 1\npools:\n  web:\n    backends: ["${big.url}"]\n` +
        `routes:\n  - match: { path: / }\n    pool: web\n    middleware: [ { compress: {} } ]\nlog: { access_log: false }\n`,
    );
    fulcrum = await spawnFulcrum(["run", "--config", file]);
  });
  afterAll(async () => {
    fulcrum?.kill("SIGKILL");
    await big?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const encoding of ["gzip", "zstd"]) {
    test(`${encoding}: 50 MB through with RSS growing < 48 MB, decoded to 50 MB`, async () => {
      const pid = fulcrum.proc.pid;
      const before = rssOf(pid);
      let peak = before;
      const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
      let compressed = 0;
      let decoded = 0;
      try {
        const r = await fetch(`${fulcrum.url}/`, { headers: { "accept-encoding": encoding }, decompress: false } as RequestInit);
        expect(r.headers.get("content-encoding")).toBe(encoding);
        const z = encoding === "gzip" ? zlib.createGunzip() : zlib.createZstdDecompress();
        z.on("data", (d: Buffer) => (decoded += d.length));
        const ended = new Promise((res) => z.on("end", res));
        for await (const piece of r.body!) {
          compressed += piece.byteLength;
          if (!z.write(piece)) await new Promise((res) => z.once("drain", res));
        }
        z.end();
        await ended;
      } finally {
        clearInterval(timer);
      }
      peak = Math.max(peak, rssOf(pid));
      console.info(
        `${encoding} 50 MB: ${(compressed / 2 ** 20).toFixed(1)} MB sent; RSS ${(before / 2 ** 20).toFixed(0)} → ${
          (peak / 2 ** 20).toFixed(0)
        } MB`,
      );
      expect(decoded).toBe(SIZE);
      expect(compressed).toBeLessThan(SIZE / 2);
      expect(peak - before).toBeLessThan(LIMIT);
    }, 60_000);
  }
});
