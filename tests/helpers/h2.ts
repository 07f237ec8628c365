/** HTTP/2 test helpers: a node:http2 client session, and the nghttp2 command-line tools run without blocking the test's event loop. */
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";

export interface H2Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A client session to `url` (h2c with prior knowledge); close it when done. */
export async function h2connect(url: string, settings?: http2.Settings): Promise<ClientHttp2Session> {
  const session = http2.connect(url, settings ? { settings } : {});
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("remoteSettings", () => resolve());
    session.once("error", reject);
  });
  return session;
}

/** One request on `session`. */
export function h2request(
  session: ClientHttp2Session,
  headers: Record<string, string | string[]>,
  body?: string | Buffer,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "GET", ":path": "/", ...headers }, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let head: IncomingHttpHeaders = {};
    req.on("response", (h) => (head = h));
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => resolve({ status: Number(head[":status"]), headers: head, body: Buffer.concat(chunks) }));
    req.on("error", reject);
    if (body !== undefined) req.end(body);
  });
}

/**
 * Whether nghttp2's clients (h2load, nghttp; Debian's nghttp2-client, which .ci/run installs) are
 * here. Without them the tests that use them say so and skip, except under CI, which must have them.
 */
export function nghttp2Tools(): boolean {
  if (Bun.which("h2load") && Bun.which("nghttp")) return true;
  const why = "h2load or nghttp not found on PATH: apt-get install nghttp2-client";
  if (process.env.CI) throw new Error(why);
  console.warn(`skipping the HTTP/2 tests that need them: ${why}`);
  return false;
}

/** Run a command (curl, nghttp, h2load) to its end without blocking the event loop (Fulcrum may run in this process). */
export async function run(cmd: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** h2load's summary: requests done, succeeded, and the 2xx count. */
export function h2loadSummary(out: string): { done: number; succeeded: number; ok: number; failed: number } {
  const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(out);
  const s = /status codes: (\d+) 2xx/.exec(out);
  if (!m || !s) throw new Error(`unexpected h2load output:\n${out}`);
  return { done: Number(m[3]), succeeded: Number(m[4]), failed: Number(m[5]), ok: Number(s[1]) };
}
