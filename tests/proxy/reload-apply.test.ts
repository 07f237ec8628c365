// What a reload applies, shown end to end: the admin token and metrics, tracing turned on, off and
// changed (requests in flight keep their tracer; the old exporter is flushed), a route key, a pool
// key and plugins.watch, in one process and with workers; and what it cannot apply, named in the
// answer. tests/proxy/reload-keys.test.ts walks every key; this file shows the representative ones work.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { startOtlpReceiver, type OtlpReceiver } from "../helpers/otlp-receiver.ts";
import { spawnRun, tempDir, type ChildFulcrum } from "../helpers/plugins.ts";
import { testScope } from "../helpers/scope.ts";
import type { TestBackend } from "../helpers/backends.ts";

setDefaultTimeout(30_000);
const { cleanups, backend, backends, fulcrum } = testScope();

async function receiver(): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver();
  cleanups.push(() => r.stop());
  return r;
}

interface Running extends ChildFulcrum {
  readonly adminUrl: string;
  write(yaml: string): void;
}

/** `bun main.ts run` on a config file in a temp folder, with its admin listener on a free loopback port. */
async function run(yaml: string): Promise<Running> {
  const dir = tempDir("fulcrum-reload-");
  const file = dir.write("fulcrum.yaml", yaml);
  const child = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
  cleanups.push(async () => {
    child.proc.kill("SIGKILL");
    await child.closed;
  });
  const admin = JSON.parse(await child.waitFor('"message":"admin API listening"')).url as string;
  return { ...child, adminUrl: admin, write: (text) => void dir.write("fulcrum.yaml", text) };
}

const pools = (bs: TestBackend[]) => `pools:\n  web: { backends: [${bs.map((b) => `"${b.url}"`).join(", ")}] }\n`;
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
const reload = (c: Running, token?: string) => fetch(`${c.adminUrl}/reload`, { method: "POST", ...(token ? bearer(token) : {}) });

/** `n` requests on fresh connections (with workers, the kernel spreads them); each backend request's traceparent. */
async function traceparents(url: string, b: TestBackend, n: number): Promise<(string | null)[]> {
  const from = b.requests.length;
  for (let i = 0; i < n; i++) await (await fetch(url, { headers: { connection: "close" } })).text();
  return b.requests.slice(from).map((r) => r.headers.get("traceparent"));
}

for (const workers of [1, 2]) {
  describe(`workers: ${workers}`, () => {
    test("admin.token, admin.metrics and telemetry.traces apply on reload; the answer names no restart", async () => {
      const r = await receiver();
      const b = backend("b1");
      const head = `listen: 127.0.0.1:0\nworkers: ${workers}\nlog: { access_log: false }\n${pools([b])}`;
      const c = await run(`${head}admin: { listen: 127.0.0.1:0 }\n`);
      expect((await fetch(`${c.adminUrl}/backends`)).status).toBe(200);
      expect((await traceparents(c.url, b, 4)).every((t) => t === null)).toBe(true);

      // Token, metrics off and tracing on, in one reload.
      c.write(
        `${head}admin: { listen: 127.0.0.1:0, token: t0ken, metrics: false }\n` +
          `telemetry: { traces: { endpoint: "${r.url}", scheduled_delay: 50ms } }\n`,
      );
      let from = c.lines.length;
      const answer = await reload(c);
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual({ status: "reloaded", ok: true, problems: [], restart_required: [] });
      expect(JSON.parse(await c.waitFor('"message":"reloaded"', from)).restart_required).toEqual([]);
      expect((await fetch(`${c.adminUrl}/backends`)).status).toBe(401);
      expect((await fetch(`${c.adminUrl}/backends`, bearer("wrong"))).status).toBe(401);
      expect((await fetch(`${c.adminUrl}/backends`, bearer("t0ken"))).status).toBe(200);
      expect((await fetch(`${c.adminUrl}/metrics`, bearer("t0ken"))).status).toBe(404);
      // Every process traces now: each backend request carries the CLIENT span's traceparent.
      const sent = await traceparents(c.url, b, 10);
      expect(sent.every((t) => t !== null && /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/.test(t))).toBe(true);
      const spans = await r.waitForSpans(20);
      const clientSpans = new Set(spans.filter((s) => s.kind === "CLIENT").map((s) => `00-${s.traceId}-${s.spanId}-01`));
      expect(sent.every((t) => clientSpans.has(t!))).toBe(true);

      // Tracing off and metrics back on: no more traceparent, and /metrics counts what follows.
      c.write(`${head}admin: { listen: 127.0.0.1:0, token: t0ken }\n`);
      from = c.lines.length;
      expect((await reload(c)).status).toBe(401); // the token in force guards the reload too
      expect((await reload(c, "t0ken")).status).toBe(200);
      expect((await traceparents(c.url, b, 4)).every((t) => t === null)).toBe(true);
      await c.waitFor('"message":"tracing off"', from);
      const metrics = await fetch(`${c.adminUrl}/metrics`, bearer("t0ken"));
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/fulcrum_requests_total\{[^}]*status_class="2xx"[^}]*\} 4/);
    });
  });
}

describe("what a reload cannot apply is named in its answer and its log line", () => {
  test("listen and limits: restart_required, a warning, the running values kept; log.level applied", async () => {
    const [a, b] = backends(2);
    const body = (extra: string) => `workers: 1\nadmin: { listen: 127.0.0.1:0 }\n${extra}`;
    const c = await run(body(`listen: 127.0.0.1:0\n${pools([a!])}`));
    c.write(
      body(`listen: 127.0.0.1:1\nlimits: { client_idle_timeout: 30s, max_request_body: 1mb }\nlog: { level: debug }\n${pools([b!])}`),
    );
    const from = c.lines.length;
    const r = await reload(c);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({
      status: "reloaded",
      ok: true,
      problems: [],
      restart_required: ["listen", "limits.max_request_body", "limits.client_idle_timeout"],
    });
    const warning = JSON.parse(await c.waitFor("reload cannot change", from));
    expect(warning.level).toBe("WARN");
    expect(warning.restart_required).toEqual(["listen", "limits.max_request_body", "limits.client_idle_timeout"]);
    const reloaded = await c.waitFor('"message":"reloaded"', from);
    expect(JSON.parse(reloaded).restart_required).toEqual(warning.restart_required);
    // The rest applied (the new backend serves), on the port it had.
    expect((await fetch(c.url)).headers.get("x-backend")).toBe("b2");
  });
});

describe("applied keys, in one process", () => {
  // Tracing runs in a child process: the SDK's diagnostics logger is global to a process.
  const child = (b: TestBackend, telemetry: string) =>
    `listen: 127.0.0.1:0\nworkers: 1\nadmin: { listen: 127.0.0.1:0 }\nlog: { access_log: false }\n${pools([b])}${telemetry}`;

  test("tracing turned off by a reload: a request in flight keeps its tracer, and its spans are flushed without waiting", async () => {
    const r = await receiver();
    let release!: () => void;
    const held = new Promise<void>((res) => (release = res));
    let arrived!: () => void;
    const reached = new Promise<void>((res) => (arrived = res));
    const b = backend("slow", async (req) => {
      if (new URL(req.url).pathname === "/hold") {
        arrived();
        await held;
      }
      return new Response("ok");
    });
    // Exports every 60 s: spans reach the receiver before that only if the old tracer is flushed.
    const c = await run(child(b, `telemetry: { traces: { endpoint: "${r.url}", scheduled_delay: 60s } }\n`));
    const inflight = fetch(`${c.url}/hold`);
    await reached;
    c.write(child(b, ""));
    expect(await (await reload(c)).json()).toMatchObject({ ok: true, restart_required: [] });
    await (await fetch(`${c.url}/after`)).text();
    expect(b.requests.at(-1)!.headers.get("traceparent")).toBeNull();
    release();
    expect((await inflight).status).toBe(200);
    const spans = await r.waitForSpans(2, 5000);
    expect(spans.map((s) => `${s.kind} ${s.attributes["url.path"] ?? s.attributes["url.full"]}`).sort()).toEqual([
      `CLIENT ${b.url}/hold`,
      "SERVER /hold",
    ]);
    const client = spans.find((s) => s.kind === "CLIENT")!;
    expect(b.requests.find((x) => x.path === "/hold")!.headers.get("traceparent")).toBe(`00-${client.traceId}-${client.spanId}-01`);
  });

  test("tracing settings changed by a reload: the new sample ratio and propagators apply to the next request", async () => {
    const r = await receiver();
    const b = backend("b1");
    const traced = (extra: string) => child(b, `telemetry: { traces: { endpoint: "${r.url}", scheduled_delay: 20ms${extra} } }\n`);
    const c = await run(traced(""));
    await (await fetch(`${c.url}/one`)).text();
    expect(b.requests.at(-1)!.headers.get("traceparent")).toEndWith("-01");
    c.write(traced(", sample_ratio: 0, propagators: [tracecontext, b3multi]"));
    expect((await reload(c)).status).toBe(200);
    await (await fetch(`${c.url}/two`)).text();
    const seen = b.requests.at(-1)!.headers;
    expect(seen.get("traceparent")).toEndWith("-00");
    expect(seen.get("x-b3-traceid")).not.toBeNull();
  });

  test("a route key and a pool key: a new path prefix routes at once, host_header: backend sends the backend's host", async () => {
    const b = backend("b1");
    const yamlFor = (path: string, hostHeader: string) =>
      `pools:\n  web: { host_header: ${hostHeader}, backends: ["${b.url}"] }\nroutes:\n  - { match: { path: ${path} }, pool: web }\n`;
    let yaml = yamlFor("/a", "client");
    const f = await fulcrum(yaml, { reload: () => yaml });
    expect((await fetch(`${f.url}/a/x`)).status).toBe(200);
    expect(b.requests.at(-1)!.headers.get("host")).toBe(new URL(f.url).host);
    yaml = yamlFor("/b", "backend");
    expect((await f.server.reload()).restartRequired).toEqual([]);
    expect((await fetch(`${f.url}/a/x`)).status).toBe(404);
    expect((await fetch(`${f.url}/b/x`)).status).toBe(200);
    expect(b.requests.at(-1)!.headers.get("host")).toBe(new URL(b.url).host);
  });

  test("plugins.watch turned on by a reload: the next edit of the config reloads by itself", async () => {
    const [a, b] = backends(2);
    const body = (watch: boolean, bs: TestBackend[]) =>
      `listen: 127.0.0.1:0\nworkers: 1\nadmin: { listen: 127.0.0.1:0 }\nplugins: { watch: ${watch} }\n${pools(bs)}`;
    const c = await run(body(false, [a!]));
    c.write(body(true, [a!]));
    let from = c.lines.length;
    expect((await reload(c)).status).toBe(200);
    from = c.lines.indexOf(await c.waitFor('"message":"reloaded"', from), from) + 1;
    c.write(body(true, [b!]));
    await c.waitFor('"message":"reloaded"', from);
    expect((await fetch(c.url)).headers.get("x-backend")).toBe("b2");
  });
});

describe("admin.listen off loopback keeps needing a token", () => {
  test("a reload that drops the token while the running admin listener is not on loopback is rejected", async () => {
    const b = backend("b1");
    const c = await run(`listen: 127.0.0.1:0\nworkers: 1\nadmin: { listen: "0.0.0.0:0", token: t0ken }\n${pools([b])}`);
    // admin.listen needs a restart, so the listener stays on 0.0.0.0 whatever the new file says.
    c.write(`listen: 127.0.0.1:0\nworkers: 1\nadmin: { listen: 127.0.0.1:0 }\n${pools([b])}`);
    const r = await reload(c, "t0ken");
    expect(r.status).toBe(422);
    const answer = (await r.json()) as { status: string; problems: string[] };
    expect(answer.status).toBe("rejected");
    expect(answer.problems).toHaveLength(1);
    expect(answer.problems[0]).toMatch(
      /fulcrum\.yaml:\d+:\d+: admin\.listen \(kept until a restart\) 0\.0\.0\.0:\d+ is not a loopback address/,
    );
    expect((await fetch(`${c.adminUrl}/backends`)).status).toBe(401);
  });
});
