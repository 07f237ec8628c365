import { afterEach, describe, expect, test } from "bun:test";
import { closedPort, startBackend, type TestBackend } from "../helpers/backends.ts";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";
import { outcome, RawClient } from "../helpers/raw-client.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function track<T extends TestBackend>(b: T): T {
  cleanups.push(() => b.stop());
  return b;
}

/** A backend answering `status` to everything, counting methods. */
function answering(name: string, status: number, headers: Record<string, string> = {}): TestBackend {
  return track(startBackend(name, async (req) => {
    await req.arrayBuffer();
    return new Response(`${name} ${status}`, { status, headers: { "x-backend": name, ...headers } });
  }));
}

async function serve(urls: string[], pool = "", extra = ""): Promise<InProcess> {
  const f = await startFulcrum(`pools:
  web:
    backends: [${urls.map((u) => `"${u}"`).join(", ")}]
${pool}
${extra}
log: { access_log: true }
`);
  cleanups.push(() => f.stop());
  return f;
}

const lastAccess = (f: InProcess) => f.access().at(-1)!;

describe("retries", () => {
  test("a GET answered 503 is retried on the next backend; the exact attempts and backends used", async () => {
    const a = answering("a", 503);
    const b = answering("b", 502);
    const c = answering("c", 200);
    const f = await serve([a.url, b.url, c.url], "    retry: { attempts: 3, backoff: { base: 1ms, max: 5ms } }");
    const r = await fetch(`${f.url}/x`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("c 200");
    expect([a.requests.length, b.requests.length, c.requests.length]).toEqual([1, 1, 1]);
    expect(lastAccess(f)).toMatchObject({ status: 200, attempts: 3, retry_reason: "502", backend: new URL(c.url).host });
  });

  test("attempts bounds the tries; the last backend response is passed through", async () => {
    const a = answering("a", 503);
    const b = answering("b", 503);
    const c = answering("c", 503);
    const f = await serve([a.url, b.url, c.url], "    retry: { attempts: 2, backoff: { base: 1ms, max: 5ms } }");
    const r = await fetch(f.url);
    expect(r.status).toBe(503);
    expect(await r.text()).toBe("b 503");
    expect(a.requests.length + b.requests.length + c.requests.length).toBe(2);
  });

  test("each retry goes to a backend not yet tried", async () => {
    const bs = [answering("a", 503), answering("b", 503), answering("c", 503), answering("d", 200)];
    const f = await serve(
      bs.map((b) => b.url),
      "    strategy: least-connections\n    retry: { attempts: 4, budget: { ratio: 100%, min_retries_per_second: 10 }, backoff: { base: 1ms, max: 2ms } }",
    );
    for (let i = 0; i < 5; i++) expect((await fetch(f.url)).status).toBe(200);
    for (const b of bs.slice(0, 3)) expect(b.requests.length).toBeLessThanOrEqual(5);
    expect(bs[3]!.requests.length).toBe(5);
  });

  test("a POST that reached a backend is not retried", async () => {
    const a = answering("a", 503);
    const b = answering("b", 200);
    const f = await serve([a.url, b.url], "    retry: { attempts: 3, backoff: { base: 1ms, max: 2ms } }");
    const r = await fetch(f.url, { method: "POST", body: "order=1" });
    expect(r.status).toBe(503);
    expect(a.requests.length + b.requests.length).toBe(1);
  });

  test("a POST is retried when the connection was refused (nothing was sent), and its body arrives", async () => {
    let body = "";
    const ok = track(startBackend("ok", async (req) => ((body = await req.text()), new Response("ok"))));
    const f = await serve([`http://127.0.0.1:${closedPort()}`, ok.url], "    retry: { attempts: 2, backoff: { base: 1ms, max: 2ms } }");
    const r = await fetch(f.url, { method: "POST", body: "order=2" });
    expect(r.status).toBe(200);
    expect(body).toBe("order=2");
    expect(lastAccess(f)).toMatchObject({ attempts: 2, retry_reason: "connect" });
  });

  test("a route may opt in to retrying non-idempotent requests", async () => {
    const a = answering("a", 503);
    const b = answering("b", 200);
    const f = await serve(
      [a.url, b.url],
      "    retry: { attempts: 2, backoff: { base: 1ms, max: 2ms } }",
      "routes:\n  - { pool: web, retry_non_idempotent: true }",
    );
    expect((await fetch(f.url, { method: "POST", body: "x" })).status).toBe(200);
  });

  test("a streamed body larger than buffer_body_limit is not re-sent after it reached a backend", async () => {
    const a = answering("a", 503);
    const b = answering("b", 200);
    const f = await serve(
      [a.url, b.url],
      "    retry: { attempts: 2, buffer_body_limit: 1kb, backoff: { base: 1ms, max: 2ms } }",
      "routes:\n  - { pool: web, retry_non_idempotent: true }",
    );
    const r = await fetch(f.url, { method: "PUT", body: "x".repeat(4096) });
    expect(r.status).toBe(503);
    expect(a.requests.length + b.requests.length).toBe(1);
  });

  test("Retry-After on a 503 is honoured: no retry sooner; none at all when it exceeds backoff.max", async () => {
    const a = answering("a", 503, { "retry-after": "1" });
    const b = answering("b", 200);
    const patient = await serve([a.url, b.url], "    retry: { attempts: 2, backoff: { base: 1ms, max: 2s } }");
    const t0 = performance.now();
    expect((await fetch(patient.url)).status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(990);

    const c = answering("c", 503, { "retry-after": "30" });
    const d = answering("d", 200);
    const hasty = await serve([c.url, d.url], "    retry: { attempts: 2, backoff: { base: 1ms, max: 1s } }");
    const r = await fetch(hasty.url);
    expect(r.status).toBe(503);
    expect(r.headers.get("retry-after")).toBe("30");
    expect(d.requests.length).toBe(0);
  });

  test("the retry budget stops retries when exceeded", async () => {
    const a = answering("a", 503);
    const b = answering("b", 503);
    const f = await serve(
      [a.url, b.url],
      "    retry: { attempts: 2, budget: { ratio: 10%, window: 10s, min_retries_per_second: 0.1 }, backoff: { base: 1ms, max: 1ms } }",
    );
    for (let i = 0; i < 10; i++) await (await fetch(f.url)).text();
    // 10 requests: 10% of 10 plus 0.1/s × 10 s = 2 retries allowed, so 12 upstream requests, not 20.
    expect(a.requests.length + b.requests.length).toBe(12);
    expect(f.access().filter((l) => String(l.error ?? "").startsWith("retry budget exhausted")).length).toBe(8);
  });

  test("a per-try timeout moves on to the next backend inside the overall deadline", async () => {
    const slow = track(startBackend("slow", () => new Promise<Response>(() => {})));
    const fast = answering("fast", 200);
    const f = await serve(
      [slow.url, fast.url],
      "    timeouts: { request: 2s }\n    retry: { attempts: 2, per_try_timeout: 100ms, backoff: { base: 1ms, max: 1ms } }",
    );
    const t0 = performance.now();
    const r = await fetch(f.url);
    expect(r.status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(lastAccess(f)).toMatchObject({ attempts: 2, retry_reason: "timeout" });
  });

  test("the overall deadline bounds all attempts: 504", async () => {
    const slow1 = track(startBackend("s1", () => new Promise<Response>(() => {})));
    const slow2 = track(startBackend("s2", () => new Promise<Response>(() => {})));
    const f = await serve([slow1.url, slow2.url], "    timeouts: { request: 300ms, response: 10s }\n    retry: { attempts: 5 }");
    const t0 = performance.now();
    expect((await fetch(f.url)).status).toBe(504);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe("a body that is slow to arrive", () => {
  /** POST a 10-byte body: half with the head, the rest `laterMs` later (a slow client). */
  async function slowPost(f: InProcess, laterMs: number) {
    const c = await RawClient.connect(f.server.listener.port);
    cleanups.push(() => c.destroy());
    c.write("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello");
    const timer = setTimeout(() => c.write("world"), laterMs);
    cleanups.push(() => clearTimeout(timer));
    return outcome(await c.readResponse({ timeoutMs: 5000 }));
  }

  test("counts toward timeouts.request: 504 when it arrives after the deadline, and the backend never sees it", async () => {
    const b = answering("b", 200);
    const f = await serve([b.url], "    timeouts: { request: 300ms }");
    expect(await slowPost(f, 800)).toBe(504);
    expect(b.requests).toHaveLength(0);
  });

  test("does not count as the attempt's latency (the backend's latency average)", async () => {
    const b = answering("b", 200);
    const f = await serve([b.url]);
    expect(await slowPost(f, 400)).toBe(200);
    // The upload took 400 ms; the backend answered at once.
    expect(f.server.gateway.pools.get("web")!.backends[0]!.latencyEwma).toBeLessThan(200);
  });
});

describe("limits, passive health and panic mode", () => {
  test("max_inflight.pool: over the limit fails fast with 503 instead of queueing", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = track(startBackend("held", async () => (await gate, new Response("done"))));
    const f = await serve([b.url], "    max_inflight: { pool: 2 }");
    const held = [fetch(f.url), fetch(f.url)];
    while (b.requests.length < 2) await new Promise((r) => setTimeout(r, 5));
    const r = await fetch(f.url);
    expect(r.status).toBe(503);
    expect(await r.text()).toBe("pool at capacity\n");
    release();
    expect((await Promise.all(held)).map((x) => x.status)).toEqual([200, 200]);
  });

  test("max_inflight.backend: a full backend is skipped for another one", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const a = track(startBackend("a", async () => (await gate, new Response("a", { headers: { "x-backend": "a" } }))));
    const b = answering("b", 200);
    const f = await serve([a.url, b.url], "    max_inflight: { backend: 1 }");
    const held = fetch(f.url); // goes to a (round robin) and stays
    while (a.requests.length < 1) await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 4; i++) expect((await fetch(f.url)).headers.get("x-backend")).toBe("b");
    release();
    await held;
  });

  test("outlier detection ejects a backend after consecutive failures, at most max_ejected_percent", async () => {
    const bad = answering("bad", 500);
    const bad2 = answering("bad2", 500);
    const good = answering("good", 200);
    const f = await serve(
      [bad.url, bad2.url, good.url],
      "    retry: { attempts: 1 }\n    outlier_detection: { consecutive_failures: 2, ejection_time: 30s, max_ejected_percent: 34 }",
    );
    for (let i = 0; i < 12; i++) await (await fetch(f.url)).text();
    const pool = f.server.gateway.pools.get("web")!;
    const ejected = pool.backends.filter((b) => b.status().ejected).map((b) => b.id);
    // Only one of three may be out at once (34%), and it is one of the failing ones.
    expect(ejected.length).toBe(1);
    expect([new URL(bad.url).host, new URL(bad2.url).host]).toContain(ejected[0]!);
    expect(f.records.some((r) => String(r.message.join("")).includes("ejected for"))).toBe(true);
  });

  test("a circuit that opens takes the backend out of rotation", async () => {
    const bad = answering("bad", 500);
    const good = answering("good", 200);
    const f = await serve([bad.url, good.url], "    retry: { attempts: 1 }\n    circuit_breaker: { failures: 2, open_for: 30s }");
    for (let i = 0; i < 4; i++) await (await fetch(f.url)).text();
    expect(bad.requests.length).toBe(2);
    for (let i = 0; i < 6; i++) expect((await fetch(f.url)).headers.get("x-backend")).toBe("good");
    expect(f.server.gateway.pools.get("web")!.backends[0]!.status().circuit).toBe("open");
  });

  test("with every backend down: 503 by default; panic mode routes across all of them, logged", async () => {
    const a = answering("a", 200);
    const strict = await serve([a.url]);
    const pool = strict.server.gateway.pools.get("web")!;
    pool.backends[0]!.activeHealthy = false;
    pool.refresh();
    expect((await fetch(strict.url)).status).toBe(503);

    const panicky = await serve([a.url], "    panic: true");
    const p2 = panicky.server.gateway.pools.get("web")!;
    p2.backends[0]!.activeHealthy = false;
    p2.refresh();
    expect((await fetch(panicky.url)).status).toBe(200);
    expect(panicky.records.some((r) => String(r.message.join("")).includes("panic mode"))).toBe(true);
  });
});

describe("reload", () => {
  test("a backend kept across a reload keeps its circuit state, and the new pool owns it", async () => {
    const bad = answering("bad", 500);
    const good = answering("good", 200);
    const f = await serve([bad.url, good.url], "    retry: { attempts: 1 }\n    circuit_breaker: { failures: 2, open_for: 30s }");
    for (let i = 0; i < 4; i++) await (await fetch(f.url)).text();
    const before = f.server.gateway.pools.get("web")!;
    expect(before.backends[0]!.circuit).toBe("open");
    expect((await f.server.reload()).ok).toBe(true);
    const after = f.server.gateway.pools.get("web")!;
    expect(after).not.toBe(before);
    expect(after.backends[0]).toBe(before.backends[0]!);
    expect(after.backends[0]!.owner).toBe(after);
    expect(after.available.map((b) => b.id)).toEqual([new URL(good.url).host]);
    for (let i = 0; i < 4; i++) expect((await fetch(f.url)).headers.get("x-backend")).toBe("good");
  });
});

describe("circuit breaker end to end", () => {
  test("a client abandoning the half-open trial request does not wedge the circuit", async () => {
    let mode: "fail" | "hang" | "ok" = "fail";
    let arrived!: () => void;
    const b = track(startBackend("b", async () => {
      if (mode === "fail") return new Response("no", { status: 500 });
      if (mode === "hang") {
        arrived();
        return new Promise<Response>(() => {});
      }
      return new Response("yes", { headers: { "x-backend": "b" } });
    }));
    const f = await serve(
      [b.url],
      "    retry: { attempts: 1 }\n    circuit_breaker: { failures: 2, open_for: 100ms, half_open_requests: 1 }",
    );
    for (let i = 0; i < 2; i++) expect((await fetch(f.url)).status).toBe(500);
    const backend = f.server.gateway.pools.get("web")!.backends[0]!;
    expect(backend.circuit).toBe("open");
    const deadline = Date.now() + 5_000;
    while (backend.circuit !== "half-open" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(backend.circuit).toBe("half-open");

    mode = "hang";
    const reached = new Promise<void>((r) => (arrived = r));
    const ac = new AbortController();
    const trial = fetch(f.url, { signal: ac.signal }).catch(() => "aborted");
    await reached;
    ac.abort();
    expect(await trial).toBe("aborted");
    while (backend.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));

    mode = "ok";
    const r = await fetch(f.url);
    expect(r.status).toBe(200);
    expect(backend.circuit).toBe("closed");
  });
});

describe("reload that is rejected", () => {
  test("leaves the running pool owning its backends: an ejection still ends and the backend comes back", async () => {
    const { startFromFile, tempDir } = await import("../helpers/plugins.ts");
    let failing = false;
    const b1 = track(
      startBackend("b1", () => (failing ? new Response("no", { status: 500 }) : new Response("b1", { headers: { "x-backend": "b1" } }))),
    );
    const b2 = answering("b2", 200);
    const t = tempDir();
    const good =
      `pools:\n  web:\n    backends: ["${b1.url}", "${b2.url}"]\n    retry: { attempts: 1 }\n    outlier_detection: { consecutive_failures: 1, ejection_time: 200ms }\n`;
    const file = t.write("f.yaml", good);
    const f = await startFromFile(file);
    cleanups.push(() => f.stop());
    const running = f.server.gateway.pools.get("web")!;
    // A config whose pools build but whose middleware fails: rejected as a whole.
    t.write("f.yaml", `${good}routes:\n  - { pool: web, middleware: [ { rate-limit: { rate: bogus } } ] }\n`);
    expect((await f.server.reload()).ok).toBe(false);
    expect(f.server.gateway.pools.get("web")).toBe(running);
    expect(running.backends.every((b) => b.owner === running)).toBe(true);

    failing = true;
    await (await fetch(f.url)).text(); // b1 answers 500 → ejected for 200 ms
    failing = false;
    expect(running.available.map((b) => b.id)).toEqual([new URL(b2.url).host]);
    const deadline = Date.now() + 5_000;
    while (running.available.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(running.available.length).toBe(2);
  });
});
