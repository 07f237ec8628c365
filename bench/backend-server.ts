// One example backend (used when nginx is absent, or with `npm run backends -- --kind bun`).
// node:http rather than Bun.serve because it exposes a per-connection event, which is how the
// harness counts upstream connections a proxy opens. Stats are served on a unix socket so that
// reading them opens no TCP connection that would be counted.
import { createServer } from "node:http";
import { unlinkSync } from "node:fs";
import { body, BODY_SIZES, POST_PATH } from "./lib/backends.ts";

const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  console.log(
    "usage: bun bench/backend-server.ts [--port 19001] [--name bN] [--stats /path/to/stats.sock]\n" +
      "One example backend (the harness starts these; `npm run backends` starts several).",
  );
  process.exit(0);
}
const arg = (k: string, d?: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1]! : d;
};
const port = Number(arg("--port", "19001"));
const name = arg("--name", `b${port}`)!;
const statsSock = arg("--stats");

const bodies = new Map(Object.entries(BODY_SIZES).map(([p, n]) => [p, Buffer.from(body(n))]));
const ok = Buffer.from("ok\n");
let accepts = 0, requests = 0;

const server = createServer((req, res) => {
  requests++;
  if (req.method === "POST" || req.method === "PUT") {
    // Drain the whole request body before answering, as a real upload handler would.
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
    });
    req.on("end", () => {
      res.writeHead(req.url === POST_PATH ? 200 : 404, { "x-backend": name, "content-type": "text/plain", "content-length": ok.length });
      res.end(ok);
    });
    return;
  }
  if (req.url === "/" || req.url === "/healthz") {
    const t = req.url === "/" ? `hello from ${name}\n` : "ok\n";
    res.writeHead(200, { "x-backend": name, "content-type": "text/plain", "content-length": Buffer.byteLength(t) });
    res.end(t);
    return;
  }
  const b = bodies.get(req.url ?? "");
  if (!b) {
    res.writeHead(404, { "x-backend": name, "content-length": 0 });
    res.end();
    return;
  }
  res.writeHead(200, { "x-backend": name, "content-type": "text/plain", "content-length": b.length });
  res.end(b);
});
server.keepAliveTimeout = 120_000;
server.on("connection", () => {
  accepts++;
});
server.listen(port, "127.0.0.1", () => process.stderr.write(`backend ${name} listening on http://127.0.0.1:${port}\n`));

if (statsSock) {
  try {
    unlinkSync(statsSock);
  } catch { /* not there */ }
  Bun.serve({ unix: statsSock, fetch: () => Response.json({ name, accepts, requests }) });
}
for (const s of ["SIGTERM", "SIGINT"] as const)
  process.on(s, () => {
    try {
      if (statsSock) unlinkSync(statsSock);
    } catch { /* not there */ }
    process.exit(0);
  });
