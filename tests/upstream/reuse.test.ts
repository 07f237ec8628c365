import { afterEach, describe, expect, test } from "bun:test";
import { startRawBackend, type RawBackend } from "../helpers/backends.ts";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";

// Fulcrum's answer to Bun fetch's hidden retries: its own client re-sends only a bodyless
// request, only once, and only when a reused keep-alive connection died before any response.
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";

/** Answers the first request on each connection; kills the connection at the second one. */
function staleBackend(): RawBackend {
  const b = startRawBackend((_head, s, at) => (at.nthOnConn === 1 ? s.write(OK) : s.terminate()));
  cleanups.push(() => b.stop());
  return b;
}

async function serve(url: string, extra = ""): Promise<InProcess> {
  const f = await startFulcrum(`pools:\n  web:\n    backends: ["${url}"]\n${extra}log: { access_log: true }\n`);
  cleanups.push(() => f.stop());
  return f;
}

describe("upstream connection reuse", () => {
  test("reuses one keep-alive connection for sequential requests", async () => {
    const b = startRawBackend((_h, s) => s.write(OK));
    cleanups.push(() => b.stop());
    const f = await serve(b.url);
    for (let i = 0; i < 5; i++) expect(await (await fetch(f.url)).text()).toBe("ok");
    expect(new Set(b.heads.map((h) => h.conn)).size).toBe(1);
  });

  test("a GET on a connection that died while idle is re-sent once on a new connection", async () => {
    const b = staleBackend();
    const f = await serve(b.url);
    expect((await fetch(f.url)).status).toBe(200);
    const r = await fetch(`${f.url}/second`);
    expect(r.status).toBe(200);
    // Seen on the dead connection (1) and then on a fresh one (2): one deliberate retry.
    expect(b.heads.filter((h) => h.head.startsWith("GET /second")).map((h) => h.conn)).toEqual([1, 2]);
  });

  test("a POST with a body on a dead pooled connection is not re-sent: 502, seen once", async () => {
    const b = staleBackend();
    const f = await serve(b.url);
    expect((await fetch(f.url)).status).toBe(200);
    const r = await fetch(`${f.url}/pay`, { method: "POST", body: "amount=10" });
    expect(r.status).toBe(502);
    expect(b.heads.filter((h) => h.head.startsWith("POST /pay")).length).toBe(1);
  });

  test("with retries off, a PUT with a body is not re-sent either", async () => {
    const b = staleBackend();
    const f = await serve(b.url, "    retry: { attempts: 1 }\n");
    expect((await fetch(f.url)).status).toBe(200);
    expect((await fetch(`${f.url}/doc`, { method: "PUT", body: "v2" })).status).toBe(502);
    expect(b.heads.filter((h) => h.head.startsWith("PUT /doc")).length).toBe(1);
  });

  test("with the default policy, an idempotent PUT is retried by the proxy, visibly", async () => {
    const b = staleBackend();
    const f = await serve(b.url);
    expect((await fetch(f.url)).status).toBe(200);
    expect((await fetch(`${f.url}/doc`, { method: "PUT", body: "v2" })).status).toBe(200);
    expect(b.heads.filter((h) => h.head.startsWith("PUT /doc")).length).toBe(2);
    expect(f.access().at(-1)).toMatchObject({ path: "/doc", status: 200, attempts: 2, retry_reason: "reset" });
  });
});
