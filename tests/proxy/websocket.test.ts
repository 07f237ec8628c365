// WebSocket through Fulcrum (RFC 6455 Upgrade over HTTP/1.1), with the `ws` package as client and backend, on loopback.
import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { testScope } from "../helpers/scope.ts";
import { until, wsScope } from "../helpers/websocket.ts";
import { startOtlpReceiver } from "../helpers/otlp-receiver.ts";

const ws = wsScope();
const scope = testScope();

const config = (backends: string[], extra = "", route = "") => `
shutdown_timeout: 2s
pools:
  web:
    backends: [${backends.join(", ")}]
routes:
  - match: { path: / }
    pool: web
${route}
${extra}
`;

describe("WebSocket tunnels", () => {
  test("text and binary messages up to 16 MiB are echoed through, in order", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url]));
    const c = ws.client(`${f.url}/chat`);
    await c.opened;
    c.ws.send("hello");
    expect(await c.message(0)).toMatchObject({ binary: false });
    expect(String(c.messages[0]!.data)).toBe("hello");
    const bin = Buffer.from([0, 1, 2, 255]);
    c.ws.send(bin);
    expect((await c.message(1)).binary).toBe(true);
    expect(c.messages[1]!.data.equals(bin)).toBe(true);
    const big = Buffer.alloc(16 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    c.ws.send(big);
    const got = await c.message(2, 30_000);
    expect(got.data.length).toBe(big.length);
    expect(got.data.equals(big)).toBe(true);
    const text = "é".repeat(1024 * 1024);
    c.ws.send(text);
    expect(String((await c.message(3, 30_000)).data)).toBe(text);
    // The backend saw the client's handshake as sent (Host, path, Sec-WebSocket-*), from Fulcrum.
    const req = b.accepted[0]!.req;
    expect(req.url).toBe("/chat");
    expect(req.headers["sec-websocket-version"]).toBe("13");
    expect(req.headers["x-forwarded-for"]).toBe("127.0.0.1");
  });

  test("ping and pong pass both ways", async () => {
    let serverSide: import("ws").WebSocket | undefined;
    const b = await ws.backend({ onConnection: (s) => (serverSide = s) });
    const f = await scope.fulcrum(config([b.url]));
    const c = ws.client(f.url);
    await c.opened;
    const pong = new Promise<string>((r) => c.ws.once("pong", (d) => r(String(d))));
    c.ws.ping("from-client");
    expect(await pong).toBe("from-client");
    await until(() => serverSide !== undefined);
    const ping = new Promise<string>((r) => c.ws.once("ping", (d) => r(String(d))));
    const serverPong = new Promise<string>((r) => serverSide!.once("pong", (d) => r(String(d))));
    serverSide!.ping("from-server");
    expect(await ping).toBe("from-server");
    expect(await serverPong).toBe("from-server"); // ws answers pings itself
  });

  test("close codes and reasons pass both ways", async () => {
    const sockets: import("ws").WebSocket[] = [];
    const b = await ws.backend({ onConnection: (s) => sockets.push(s) });
    const f = await scope.fulcrum(config([b.url]));
    const c1 = ws.client(f.url);
    await c1.opened;
    c1.ws.close(4001, "client says bye");
    expect(await c1.closed).toEqual({ code: 4001, reason: "client says bye" });
    await until(() => b.closes.length === 1);
    expect(b.closes[0]).toEqual({ code: 4001, reason: "client says bye" });

    const c2 = ws.client(f.url);
    await c2.opened;
    await until(() => sockets.length === 2);
    sockets[1]!.close(4002, "server says bye");
    expect(await c2.closed).toEqual({ code: 4002, reason: "server says bye" });
    // After the close frames, both sides end their TCP connection: closed_by is whichever came first.
    await until(() => f.access().length === 2);
    expect(f.access().map((a) => a.status)).toEqual([101, 101]);
  });

  test("the subprotocol and extensions the backend chose reach the client", async () => {
    const b = await ws.backend({ handleProtocols: (p) => (p.has("chat.v2") ? "chat.v2" : false), perMessageDeflate: true });
    const f = await scope.fulcrum(config([b.url]));
    const c = ws.client(f.url, { protocols: ["chat.v1", "chat.v2"] });
    await c.opened;
    expect(c.ws.protocol).toBe("chat.v2");
    expect(c.ws.extensions).toContain("permessage-deflate");
  });

  test("1,000 concurrent tunnels each echo their own message", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url]));
    const clients = Array.from({ length: 1000 }, () => ws.client(f.url));
    await Promise.all(clients.map((c) => c.opened));
    expect(f.server.gateway.inflight()).toBe(1000);
    clients.forEach((c, i) => c.ws.send(`m${i}`));
    const got = await Promise.all(clients.map((c) => c.message(0, 30_000)));
    expect(got.map((m) => String(m.data))).toEqual(clients.map((_, i) => `m${i}`));
    for (const c of clients) c.ws.close(1000);
    await Promise.all(clients.map((c) => c.closed));
    await until(() => f.server.gateway.inflight() === 0, 10_000, "tunnels to close");
  }, 60_000);

  test("a backend that dies closes the client's tunnel abnormally (1006)", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url]));
    const c = ws.client(f.url);
    await c.opened;
    await until(() => b.accepted.length === 1);
    b.accepted[0]!.ws.terminate(); // TCP reset, no close frame
    expect((await c.closed).code).toBe(1006);
    await until(() => f.access().length === 1);
    expect(f.access()[0]).toMatchObject({ status: 101, closed_by: "backend", upgrade: "websocket" });
    expect(f.server.gateway.inflight()).toBe(0);
  });

  test("a client that vanishes closes the backend's side", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url]));
    const c = ws.client(f.url);
    await c.opened;
    c.ws.terminate();
    await until(() => b.closes.length === 1);
    expect(b.closes[0]!.code).toBe(1006);
    await until(() => f.access().length === 1);
    expect(f.access()[0]).toMatchObject({ closed_by: "client" });
  });

  test("an idle tunnel is closed after timeouts.tunnel_idle and logged; traffic keeps a tunnel open", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url], "", "    timeouts: { tunnel_idle: 400ms }"));
    const quiet = ws.client(f.url);
    const busy = ws.client(f.url);
    await Promise.all([quiet.opened, busy.opened]);
    const started = Date.now();
    const timer = setInterval(() => busy.ws.send("tick"), 100);
    try {
      expect((await quiet.closed).code).toBe(1006);
      const after = Date.now() - started;
      expect(after).toBeGreaterThanOrEqual(350);
      expect(after).toBeLessThan(3000);
      await new Promise((r) => setTimeout(r, 600));
      expect(busy.ws.readyState).toBe(busy.ws.OPEN);
    } finally {
      clearInterval(timer);
    }
    const line = f.access().find((a) => a.closed_by === "idle");
    expect(line).toMatchObject({ status: 101, upgrade: "websocket" });
  });

  test("tunnels count in flight and per backend in the admin API until they close", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url], "admin: { listen: 127.0.0.1:0 }"));
    const cs = [ws.client(f.url), ws.client(f.url)];
    await Promise.all(cs.map((c) => c.opened));
    const view = await (await fetch(`${f.adminUrl}/backends`)).json() as { pools: Record<string, { backends: Record<string, unknown>[] }> };
    expect(view.pools.web!.backends[0]).toMatchObject({ tunnels: 2, inflight: 2 });
    for (const c of cs) c.ws.close();
    await Promise.all(cs.map((c) => c.closed));
    await until(() => f.server.gateway.pools.get("web")!.backends[0]!.tunnels === 0);
    expect(f.server.gateway.pools.get("web")!.backends[0]!.inflight).toBe(0);
    const lines = f.access();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ method: "GET", status: 101, attempts: 1, upgrade: "websocket" });
    expect(["client", "backend"]).toContain(lines[0]!.closed_by as string);
    expect(Number(lines[0]!.bytes_in)).toBeGreaterThan(0);
  });

  test("a tunnel has a SERVER span from the handshake to its close, and a CLIENT span for the backend's 101", async () => {
    const r = await startOtlpReceiver();
    scope.cleanups.push(() => r.stop());
    const b = await ws.backend();
    const f = await scope.fulcrum(
      config([b.url], `telemetry: { traces: { endpoint: "${r.url}", protocol: http/json, scheduled_delay: 20ms } }`),
    );
    const c = ws.client(`${f.url}/live`);
    await c.opened;
    c.ws.send("x");
    await c.message(0);
    c.ws.terminate();
    const spans = await r.waitForSpans(2);
    const server = spans.find((s) => s.kind === "SERVER")!;
    const client = spans.find((s) => s.kind === "CLIENT")!;
    expect(server.attributes).toMatchObject({
      "http.response.status_code": 101,
      "url.path": "/live",
      "fulcrum.tunnel.upgrade": "websocket",
      "fulcrum.tunnel.closed_by": "client",
    });
    expect(Number(server.attributes["fulcrum.tunnel.bytes_in"])).toBeGreaterThan(0);
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.attributes["http.response.status_code"]).toBe(101);
  });

  test("middleware routes the handshake like any request: it may refuse it with a status", async () => {
    const b = await ws.backend();
    const route = `    middleware:
      - plugin: ${new URL("../../plugins/api-key.ts", import.meta.url).pathname}
        options: { keys: [sesame] }`;
    const f = await scope.fulcrum(config([b.url], "", route));
    const refused = ws.client(f.url);
    await expect(refused.opened).rejects.toThrow("unexpected response 401");
    const ok = ws.client(f.url, { headers: { "x-api-key": "sesame" } });
    await ok.opened;
    ok.ws.send("through middleware");
    expect(String((await ok.message(0)).data)).toBe("through middleware");
    expect(b.accepted).toHaveLength(1);
  });

  test("a backend that refuses the upgrade is answered as a normal response", async () => {
    const b = await ws.backend();
    b.wss.options.verifyClient = (_info: unknown, cb: (ok: boolean, code?: number) => void) => cb(false, 403);
    const f = await scope.fulcrum(config([b.url]));
    await expect(ws.client(f.url).opened).rejects.toThrow("unexpected response 403");
    await until(() => f.access().length === 1);
    expect(f.access()[0]).toMatchObject({ status: 403 });
    expect(f.server.gateway.inflight()).toBe(0);
  });

  test("with websocket: false the Upgrade header is dropped as hop-by-hop", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url], "", "    websocket: false"));
    // ws's server answers a plain GET 426 Upgrade Required.
    await expect(ws.client(f.url).opened).rejects.toThrow("unexpected response 426");
  });

  test("a connect failure is retried on another backend", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config(["http://127.0.0.1:1", b.url]));
    for (let i = 0; i < 4; i++) {
      const c = ws.client(f.url);
      await c.opened;
      c.ws.close();
    }
    expect(b.accepted).toHaveLength(4);
  });

  test("a drained backend gets no new tunnels; its open ones keep going", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url], "admin: { listen: 127.0.0.1:0 }"));
    const open = ws.client(f.url);
    await open.opened;
    const id = f.server.gateway.pools.get("web")!.backends[0]!.id;
    expect((await fetch(`${f.adminUrl}/backends/web/${encodeURIComponent(id)}/drain`, { method: "POST" })).status).toBe(200);
    // The open tunnel keeps going; a new one finds no backend.
    open.ws.send("still here");
    expect(String((await open.message(0)).data)).toBe("still here");
    await expect(ws.client(f.url).opened).rejects.toThrow("unexpected response 503");
  });

  test("a reload with 100 open tunnels closes none of them", async () => {
    const b = await ws.backend();
    let yaml = config([b.url]);
    const f = await scope.fulcrum(yaml, { reload: () => yaml });
    const clients = Array.from({ length: 100 }, () => ws.client(f.url));
    await Promise.all(clients.map((c) => c.opened));
    const before = f.server.gateway;
    yaml = config([b.url], "", "    retry_non_idempotent: true");
    expect((await f.server.reload()).ok).toBe(true);
    expect(f.server.gateway).not.toBe(before);
    clients.forEach((c, i) => c.ws.send(`after reload ${i}`));
    const got = await Promise.all(clients.map((c) => c.message(0)));
    expect(got.map((m) => String(m.data))).toEqual(clients.map((_, i) => `after reload ${i}`));
    expect(clients.every((c) => c.ws.readyState === c.ws.OPEN)).toBe(true);
    expect(before.inflight()).toBe(100);
    for (const c of clients) c.ws.close();
    await until(() => before.inflight() === 0);
  });

  test("graceful shutdown waits for open tunnels up to shutdown_timeout, then closes them", async () => {
    const b = await ws.backend();
    const f = await scope.fulcrum(config([b.url]).replace("shutdown_timeout: 2s", "shutdown_timeout: 300ms"));
    const c = ws.client(f.url);
    await c.opened;
    const t0 = Date.now();
    const stopping = f.server.shutdown();
    c.ws.send("during shutdown");
    expect(String((await c.message(0)).data)).toBe("during shutdown");
    await stopping;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect((await c.closed).code).toBe(1006);
    expect(f.access()[0]).toMatchObject({ closed_by: "proxy" });
  });

  test("a client that does not read stops the backend (backpressure), without Fulcrum buffering it", async () => {
    let serverSide: import("ws").WebSocket | undefined;
    const b = await ws.backend({ onConnection: (s) => (serverSide = s) });
    const f = await scope.fulcrum(config([b.url]));
    // A hand-made handshake on a socket that then stops reading.
    const sock = connect(Number(new URL(f.url).port), "127.0.0.1");
    scope.cleanups.push(() => sock.destroy());
    let head = "";
    sock.on("data", (d) => (head += d.toString("latin1")));
    sock.write(
      "GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n" +
        "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    await until(() => head.includes("\r\n\r\n"));
    expect(head).toStartWith("HTTP/1.1 101");
    sock.pause();
    await until(() => serverSide !== undefined);
    const chunk = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 64; i++) serverSide!.send(chunk);
    // The kernel buffers on both hops hold a few MiB at most; the rest waits in the backend.
    await until(() => serverSide!.bufferedAmount > 40 * 1024 * 1024, 10_000, "the backend to hold its own bytes");
    await new Promise((r) => setTimeout(r, 200));
    expect(serverSide!.bufferedAmount).toBeGreaterThan(40 * 1024 * 1024);
  });

  test("other Upgrade protocols pass only where the route lists them", async () => {
    // A raw backend that switches to "x-echo" and echoes bytes.
    const server = Bun.listen<{ switched: boolean; buf: string }>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(s) {
          s.data = { switched: false, buf: "" };
        },
        data(s, d) {
          if (s.data.switched) return void s.write(d);
          s.data.buf += d.toString("latin1");
          if (!s.data.buf.includes("\r\n\r\n")) return;
          if (/\r\nupgrade: x-echo\r\n/i.test(s.data.buf)) {
            s.data.switched = true;
            s.write("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-echo\r\n\r\n");
          } else s.write("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nno switch");
        },
      },
    });
    scope.cleanups.push(() => server.stop(true));
    const backend = `http://127.0.0.1:${server.port}`;
    const raw = async (port: number) => {
      const sock = connect(port, "127.0.0.1");
      let got = "";
      sock.on("data", (d) => (got += d.toString("latin1")));
      sock.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: x-echo\r\n\r\n");
      await until(() => got.includes("\r\n\r\n"));
      const head = got;
      if (head.startsWith("HTTP/1.1 101")) {
        sock.write("ping-bytes");
        await until(() => got.includes("ping-bytes"));
      }
      sock.destroy();
      return head;
    };
    const plain = await scope.fulcrum(config([backend]));
    expect(await raw(Number(new URL(plain.url).port))).toStartWith("HTTP/1.1 200");
    const listed = await scope.fulcrum(config([backend], "", "    upgrade: [x-echo]"));
    const head = await raw(Number(new URL(listed.url).port));
    expect(head).toStartWith("HTTP/1.1 101 Switching Protocols\r\n");
    expect(head.toLowerCase()).toContain("upgrade: x-echo");
  });
});
