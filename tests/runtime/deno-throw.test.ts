// Under Deno, what a connection's data handler throws (a bug in the listener above it) goes to the
// handler's `error`, as on Bun, and the connection closes; the process must not end on it as an
// unhandled rejection. A socket the peer resets comes to `close` with the error, not to `error`.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

test("deno-tcp: a data or end handler that throws is reported to error, the connection closes, the process lives on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-deno-throw-"));
  try {
    const script = join(dir, "throw.ts");
    writeFileSync(
      script,
      `import { DenoSocket } from "${join(ROOT, "core/runtime/deno-tcp.ts")}";
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const events: string[] = [];
// Each connection: its handlers throw in \`data\` (on "boom") or in \`end\` (the client's FIN).
async function one(send: (c: Deno.TcpConn) => Promise<void>) {
  let closed!: () => void;
  const done = new Promise<void>((r) => (closed = r));
  listener.accept().then((conn) => {
    new DenoSocket(conn, {
      data(_s, d) { if (String(d).includes("boom")) throw new TypeError("thrown in data"); },
      end() { throw new TypeError("thrown in end"); },
      error(_s, e) { events.push("error: " + e.message); },
      close(_s, e) { events.push("close" + (e ? " with an error" : "")); closed(); },
    }, undefined, true).start();
  });
  const a = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await send(a);
  await done;
  // The server side closed: the client's read ends.
  const n = await a.read(new Uint8Array(16)).catch(() => null);
  a.close();
  return n;
}
const read1 = await one((a) => a.write(new TextEncoder().encode("boom")).then(() => {}));
const read2 = await one((a) => a.closeWrite());
console.log(JSON.stringify({ reads: [read1, read2], events }));
listener.close();
`,
    );
    const proc = Bun.spawn([join(ROOT, "node_modules/.bin/deno"), "run", "-A", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(err).not.toContain("Uncaught");
    expect(code).toBe(0);
    const r = JSON.parse(out.trim().split("\n").at(-1)!);
    expect(r.reads).toEqual([null, null]);
    expect(r.events).toEqual(["error: thrown in data", "close with an error", "error: thrown in end", "close with an error"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
