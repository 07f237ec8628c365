import { afterEach, describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { closedPort, startBackend, startBackends, startRawBackend, type TestBackend } from "../helpers/backends.ts";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";
import { tempDir } from "../helpers/plugins.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function poolYaml(backends: { url: string; weight?: number }[], extra = "", strategy = "round-robin"): string {
  return `pools:
  web:
    strategy: ${strategy}
    backends:
${backends.map((b) => `      - { url: "${b.url}", weight: ${b.weight ?? 1} }`).join("\n")}
${extra}
log: { level: debug, access_log: true }
`;
}

async function serve(yaml: string): Promise<InProcess> {
  const f = await startFulcrum(yaml);
  cleanups.push(() => f.stop());
  return f;
}

function track(...bs: TestBackend[]) {
  for (const b of bs) cleanups.push(() => b.stop());
  return bs;
}

async function countBy(url: string, n: number, concurrency = 10): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let sent = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < n) {
        sent++;
        const r = await fetch(url);
        await r.arrayBuffer();
        const name = r.headers.get("x-backend") ?? `status ${r.status}`;
        counts[name] = (counts[name] ?? 0) + 1;
      }
    }),
  );
  return counts;
}

describe("distribution over three real backends", () => {
  test("round robin: 300 requests → exactly 100 each", async () => {
    const bs = track(...startBackends(3));
    const f = await serve(poolYaml(bs));
    expect(await countBy(f.url, 300)).toEqual({ b1: 100, b2: 100, b3: 100 });
  });

  test("weighted round robin: weights 3:1 → 75/25 within ±1", async () => {
    const [a, b] = track(...startBackends(2));
    const f = await serve(poolYaml([{ url: a!.url, weight: 3 }, { url: b!.url, weight: 1 }], "", "weighted-round-robin"));
    const counts = await countBy(f.url, 100);
    expect(Math.abs(counts.b1! - 75)).toBeLessThanOrEqual(1);
    expect(Math.abs(counts.b2! - 25)).toBeLessThanOrEqual(1);
  });

  test("least connections: a slow backend gets fewer requests", async () => {
    const slow = startBackend("slow", async (_req, name) => {
      await Bun.sleep(60); // the backend's own latency, not synchronisation
      return new Response("slow", { headers: { "x-backend": name } });
    });
    const fast = track(slow, ...startBackends(2))!.slice(1);
    const f = await serve(poolYaml([slow, ...fast], "", "least-connections"));
    const counts = await countBy(f.url, 200, 12);
    expect(counts.slow).toBeLessThan(counts.b1! / 3);
    expect(counts.slow).toBeLessThan(counts.b2! / 3);
  });
});

describe("header handling", () => {
  test("strips hop-by-hop request headers, including those named in Connection", async () => {
    const [b] = track(startBackend("b"));
    const f = await serve(poolYaml([b!]));
    await fetch(`${f.url}/h`, {
      headers: {
        connection: "keep-alive, x-secret-hop",
        "x-secret-hop": "1",
        "keep-alive": "timeout=5",
        te: "trailers",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "proxy-connection": "keep-alive",
        "x-end-to-end": "kept",
      },
    });
    const h = b!.requests[0]!.headers;
    for (const name of ["x-secret-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection", "upgrade", "trailer"]) {
      expect(h.has(name)).toBe(false);
    }
    expect(h.get("x-end-to-end")).toBe("kept");
  });

  test("strips hop-by-hop response headers", async () => {
    const b = startRawBackend((_head, s) => {
      s.write(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-hop-first\r\nx-hop-first: 1\r\nConnection: keep-alive, x-hop-resp\r\nx-hop-resp: 1\r\n" +
          "Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: x-t\r\nx-end: yes\r\n\r\nok",
      );
    });
    cleanups.push(() => b.stop());
    const f = await serve(poolYaml([b]));
    const r = await fetch(f.url);
    expect(await r.text()).toBe("ok");
    for (const name of ["x-hop-first", "x-hop-resp", "keep-alive", "proxy-authenticate", "upgrade", "trailer"]) {
      expect(r.headers.has(name)).toBe(false);
    }
    expect(r.headers.get("x-end")).toBe("yes");
  });

  test("X-Forwarded-For is appended; X-Forwarded-Proto and -Host are set; the client's Host passes", async () => {
    const [b] = track(startBackend("b"));
    const f = await serve(poolYaml([b!]));
    await fetch(`${f.url}/xf`, { headers: { host: "shop.example.com", "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https" } });
    const h = b!.requests[0]!.headers;
    expect(h.get("x-forwarded-for")).toBe("203.0.113.7, 127.0.0.1");
    expect(h.get("x-forwarded-proto")).toBe("http");
    expect(h.get("x-forwarded-host")).toBe("shop.example.com");
    expect(h.get("host")).toBe("shop.example.com");
  });

  test("host_header: backend sends the backend's host instead", async () => {
    const [b] = track(startBackend("b"));
    const f = await serve(poolYaml([b!], "    host_header: backend"));
    await fetch(f.url, { headers: { host: "shop.example.com" } });
    expect(b!.requests[0]!.headers.get("host")).toBe(new URL(b!.url).host);
    expect(b!.requests[0]!.headers.get("x-forwarded-host")).toBe("shop.example.com");
  });

  test("sends exactly the client's User-Agent, Accept and Accept-Encoding, and none when it sent none", async () => {
    const b = startRawBackend((_head, s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    cleanups.push(() => b.stop());
    const f = await serve(poolYaml([b]));
    // A raw client, so that nothing adds headers on the way in either.
    const port = Number(new URL(f.url).port);
    for (const extra of ["", "User-Agent: ua/1\r\nAccept: text/x\r\nAccept-Encoding: br\r\n"]) {
      const sock = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      sock.write(`GET /raw HTTP/1.1\r\nHost: h\r\n${extra}Connection: close\r\n\r\n`);
      await waitFor(() => b.heads.length === (extra ? 2 : 1));
      sock.end();
    }
    const [bare, full] = b.heads.map((x) => x.head.toLowerCase());
    expect(bare).not.toContain("user-agent");
    expect(bare).not.toContain("\r\naccept:");
    expect(bare).not.toContain("accept-encoding");
    expect(full).toContain("user-agent: ua/1");
    expect(full).toContain("accept: text/x");
    expect(full).toContain("accept-encoding: br");
  });

  test("a gzip body arrives byte-identical with its Content-Encoding", async () => {
    const payload = gzipSync(Buffer.from("compress me ".repeat(5000)));
    const [b] = track(
      startBackend("gz", () => new Response(payload, { headers: { "content-encoding": "gzip", "content-type": "text/plain" } })),
    );
    const f = await serve(poolYaml([b!]));
    const r = await fetch(f.url, { headers: { "accept-encoding": "gzip" }, decompress: false });
    expect(r.headers.get("content-encoding")).toBe("gzip");
    expect(Buffer.from(await r.arrayBuffer()).equals(payload)).toBe(true);
    expect(b!.requests[0]!.headers.get("accept-encoding")).toBe("gzip");
  });
});

describe("errors", () => {
  test("no available backend → 503", async () => {
    const [b] = track(startBackend("b"));
    const f = await serve(poolYaml([b!]));
    for (const backend of f.server.gateway.pools.get("web")!.backends) backend.activeHealthy = false;
    f.server.gateway.pools.get("web")!.refresh();
    const r = await fetch(f.url);
    expect(r.status).toBe(503);
    expect(await r.text()).toBe("no backend available\n");
  });

  test("backend refusing connections → 502, and the process keeps serving", async () => {
    const f = await serve(poolYaml([{ url: `http://127.0.0.1:${closedPort()}` }]));
    const r = await fetch(f.url);
    expect(r.status).toBe(502);
    expect(await r.text()).toBe("bad gateway\n");
    expect((await fetch(f.url)).status).toBe(502);
  });

  test("backend resetting the connection → 502", async () => {
    const b = startRawBackend((_head, s) => s.terminate());
    cleanups.push(() => b.stop());
    const f = await serve(poolYaml([b]));
    expect((await fetch(f.url)).status).toBe(502);
  });

  test("backend slower than timeouts.response → 504", async () => {
    const b = startRawBackend(() => {}); // reads the request, never answers
    cleanups.push(() => b.stop());
    const f = await serve(poolYaml([b], "    timeouts: { response: 200ms }"));
    const r = await fetch(f.url);
    expect(r.status).toBe(504);
    expect(await r.text()).toBe("gateway timeout\n");
  });

  test("a body over limits.max_request_body → 413, and the backend never sees it", async () => {
    const [b] = track(startBackend("b"));
    const f = await serve(`${poolYaml([b!])}limits: { max_request_body: 1kb }\n`);
    expect((await fetch(f.url, { method: "POST", body: "x".repeat(2000) })).status).toBe(413);
    expect((await fetch(f.url, { method: "POST", body: "x".repeat(500) })).status).toBe(200);
    expect(b!.requests.length).toBe(1);
  });

  test("no route for the host → 404", async () => {
    const [b] = track(startBackend("b"));
    const f = await serve(`${poolYaml([b!])}routes:\n  - match: { host: api.example.com }\n    pool: web\n`);
    expect((await fetch(f.url, { headers: { host: "other.example.com" } })).status).toBe(404);
    expect((await fetch(f.url, { headers: { host: "api.example.com" } })).status).toBe(200);
  });
});

describe("responses that are not passed on", () => {
  test("a backend status above 599 → 502, and the request is released", async () => {
    const b = startRawBackend((_h, s) => s.write("HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok"));
    cleanups.push(() => b.stop());
    const f = await serve(poolYaml([b]));
    expect((await fetch(f.url)).status).toBe(502);
    expect(f.server.gateway.inflight()).toBe(0);
    expect(f.server.gateway.pools.get("web")!.backends[0]!.inflight).toBe(0);
  });

  test("a middleware that replaces or fails after a streaming response releases the backend's body", async () => {
    const t = tempDir();
    const plugin = t.write(
      "after-next.ts",
      `export default { kind: "middleware", name: "after-next", create: () => async (c, next) => {
  await next();
  if (c.req.header("x-mode") === "replace") c.res = new Response("custom page\\n", { status: 404 });
  if (c.req.header("x-mode") === "throw") throw new Error("post-processing failed");
} };\n`,
    );
    // A body large enough to still be streaming when the middleware runs.
    const big = new Uint8Array(4 * 1024 * 1024);
    const [b] = track(startBackend("big", () => new Response(big, { status: 404 })));
    const f = await serve(`${poolYaml([b!])}routes:\n  - { pool: web, middleware: [ { plugin: "${plugin}" } ] }\n`);
    const replaced = await fetch(f.url, { headers: { "x-mode": "replace" } });
    expect(await replaced.text()).toBe("custom page\n");
    expect((await fetch(f.url, { headers: { "x-mode": "throw" } })).status).toBe(500);
    await waitFor(() => f.access().length === 2);
    expect(f.access().map((a) => a.status)).toEqual([404, 500]);
    expect(f.server.gateway.inflight()).toBe(0);
    expect(f.server.gateway.pools.get("web")!.backends[0]!.inflight).toBe(0);
  });
});

describe("slow clients", () => {
  async function stalledUpload(url: string, declared: number): Promise<string> {
    const port = Number(new URL(url).port);
    let got = "";
    let done!: (s: string) => void;
    const answered = new Promise<string>((r) => (done = r));
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, d) {
          got += d.toString();
          if (got.includes("\r\n\r\n")) done(got);
        },
        close() {
          done(got);
        },
      },
    });
    // Declare a body, send a little of it, then stall.
    sock.write(`POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: ${declared}\r\n\r\n0123456789`);
    const answer = await answered;
    sock.end();
    return answer;
  }

  test("a client that stalls mid-body gets 408 after limits.client_body_timeout (buffered and streamed bodies)", async () => {
    const [b] = track(startBackend("b", async (req) => new Response(String((await req.arrayBuffer()).byteLength))));
    const f = await serve(`${poolYaml([b!])}limits: { client_body_timeout: 200ms }\n`);
    // Small enough to be buffered for retries.
    expect(await stalledUpload(f.url, 100)).toStartWith("HTTP/1.1 408");
    // Larger than retry.buffer_body_limit: streamed to the backend as it arrives.
    expect(await stalledUpload(f.url, 1_000_000)).toStartWith("HTTP/1.1 408");
    await waitFor(() => f.server.gateway.inflight() === 0);
    expect(f.server.gateway.pools.get("web")!.backends[0]!.inflight).toBe(0);
  });
});

describe("routing", () => {
  test("routes by host and path prefix, most specific first", async () => {
    const [a, b, c] = track(...startBackends(3));
    const f = await serve(`pools:
  a: { backends: ["${a!.url}"] }
  b: { backends: ["${b!.url}"] }
  c: { backends: ["${c!.url}"] }
routes:
  - match: { path: / }
    pool: a
  - match: { path: /api }
    pool: b
  - match: { host: "*.example.com", path: /api }
    pool: c
log: { access_log: false }
`);
    const who = async (path: string, host = "x.test") => (await fetch(`${f.url}${path}`, { headers: { host } })).headers.get("x-backend");
    expect(await who("/")).toBe("b1");
    expect(await who("/api")).toBe("b2");
    expect(await who("/api/v1?q=1")).toBe("b2");
    expect(await who("/apix")).toBe("b1");
    expect(await who("/api/v1", "shop.example.com")).toBe("b3");
  });
});

describe("client abort", () => {
  test("a client that disconnects aborts the upstream request", async () => {
    let upstreamAborted: () => void;
    const aborted = new Promise<void>((r) => (upstreamAborted = r));
    let arrived: () => void;
    const reached = new Promise<void>((r) => (arrived = r));
    const [b] = track(
      startBackend("hang", (req) => {
        req.signal.addEventListener("abort", () => upstreamAborted());
        arrived();
        return new Promise<Response>(() => {});
      }),
    );
    const f = await serve(poolYaml([b!]));
    const ac = new AbortController();
    const pending = fetch(f.url, { signal: ac.signal }).catch(() => "aborted");
    await reached;
    ac.abort();
    expect(await pending).toBe("aborted");
    await aborted; // resolves only if the backend saw its request aborted
    await waitFor(() => f.access().some((a) => a.status === 499));
    expect(f.server.gateway.pools.get("web")!.backends[0]!.inflight).toBe(0);
  });
});

describe("access log", () => {
  test("one line per request with method, path, status, backend, duration and bytes", async () => {
    const [b] = track(startBackend("b", () => new Response("12345", { headers: { "x-backend": "b" } })));
    const f = await serve(poolYaml([b!]));
    await (await fetch(`${f.url}/logged?x=1`)).text();
    await waitFor(() => f.access().length === 1);
    const line = f.access()[0]!;
    expect(line).toMatchObject({ method: "GET", path: "/logged", status: 200, backend: new URL(b!.url).host, bytes: 5, pool: "web" });
    expect(typeof line.duration_ms).toBe("number");
  });

  test("can be switched off", async () => {
    const [b] = track(startBackend("b"));
    const f = await serve(poolYaml([b!]).replace("access_log: true", "access_log: false"));
    await (await fetch(f.url)).text();
    expect(f.access()).toEqual([]);
  });
});

/** Poll a condition on the event loop (bounded): for state that no event announces. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}
