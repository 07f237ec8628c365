// `bun bench/wire-micro.ts [--path /16k|/100b|/upload] [--requests 200000] [--rounds 10] [--conns 16] [--roots A,B,...]`:
// the JS cost of the whole proxy path on the wire, without the kernel: Fulcrum's own listener
// (core/listener), the gateway's direct route and the raw upstream client (core/upstream) over
// sockets that are objects here. A request's bytes go to the listener as a fresh Buffer (as Bun
// hands over a read), the upstream request is answered with nginx's bytes in a later microtask.
// `--roots`: checkouts whose core/ is measured (default this one), each loaded as its own modules
// in this one process, rounds alternating between them; prints ns and user-CPU ns a request and
// the median over rounds of each one's ratio to the first in the same round. An A/B that a shared
// machine does not swamp as it does wrk's (±20-30% a round there):
//   bun bench/wire-micro.ts --roots /work/main,. --path /16k --requests 10000 --rounds 40
// (WIRE_DEBUG=1 with --requests 16 --conns 1 prints the bytes written on both sides.)
import { Buffer } from "node:buffer";
import { resolve } from "node:path";
import { BENCH_YAML, objectProxy } from "./lib/object-proxy.ts";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const roots = arg("--roots", resolve(`${import.meta.dir}/..`)).split(",").map((r) => resolve(r));
const rounds = Number(arg("--rounds", "10"));
const path = arg("--path", "/16k");
const total = Number(arg("--requests", "200000"));
const conns = Number(arg("--conns", "16"));

// What wrk sends, and what the bench's nginx backends answer (bench/lib/backends.ts).
const size = path === "/16k" ? 16384 : path === "/100b" ? 100 : 3;
const post = path === "/upload";
const reqBytes = Buffer.from(
  post
    ? `POST /upload HTTP/1.1\r\nHost: 127.0.0.1:18098\r\nContent-Length: 4096\r\nContent-Type: application/octet-stream\r\n\r\n${
      "x".repeat(4096)
    }`
    : `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:18098\r\n\r\n`,
  "latin1",
);
const resBytes = Buffer.from(
  post
    ? "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 06:20:08 GMT\r\nContent-Type: text/plain\r\n" +
      "Content-Length: 3\r\nConnection: keep-alive\r\nx-backend: b1\r\n\r\nok\n"
    : "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 06:20:08 GMT\r\nContent-Type: text/plain\r\n" +
      `Content-Length: ${size}\r\nLast-Modified: Sun, 06 Dec 2026 06:20:03 GMT\r\nConnection: keep-alive\r\n` +
      'ETag: "6b14fe93-4000"\r\nx-backend: b1\r\nAccept-Ranges: bytes\r\n\r\n' + "a".repeat(size),
  "latin1",
);

/** The proxy of the checkout at `root`, over object sockets: returns its load driver. */
function setup(root: string): Promise<(n: number) => Promise<void>> {
  return objectProxy(root, {
    request: reqBytes,
    response: resBytes,
    size,
    conns,
    async gateway({ parseConfig, buildGateway, builtinRegistry }) {
      const { getLogger } = await import("@logtape/logtape");
      const registry = builtinRegistry();
      const config = parseConfig(BENCH_YAML("log: { access_log: false }\n"), {
        file: "micro.yaml",
        env: () => undefined,
        strategyNames: registry.strategyNames(),
      });
      return buildGateway(config, { registry, logging: { logger: getLogger(["fulcrum"]), access: undefined, close: async () => {} } });
    },
  });
}

// Each checkout is its own set of modules in this one process; rounds alternate between them,
// so both see the same machine load, and each round is compared with the other's next to it.
const drivers = [];
for (const root of roots) drivers.push(await setup(root));
const per = Math.ceil(total / conns);
for (const run of drivers) await run(per);
const ns: number[][] = roots.map(() => []);
const user: number[][] = roots.map(() => []);
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < drivers.length; k++) {
    const i = (k + r) % drivers.length;
    Bun.gc(true);
    const cpu = process.cpuUsage();
    const t = performance.now();
    await drivers[i]!(per);
    ns[i]!.push(((performance.now() - t) * 1e6) / (per * conns));
    user[i]!.push((process.cpuUsage(cpu).user * 1e3) / (per * conns));
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(
  `${path}, ${rounds} alternating rounds of ${per * conns} requests on ${conns} connections; ns a request (median, min … max), user CPU ns`,
);
for (let i = 0; i < roots.length; i++) {
  const ratio = i === 0 ? "" : `  vs first, same round: ${((med(ns[i]!.map((x, r) => x / ns[0]![r]!)) - 1) * 100).toFixed(1)}%`;
  console.log(
    `${roots[i]!.padEnd(20)} ${med(ns[i]!).toFixed(0)} (${Math.min(...ns[i]!).toFixed(0)} … ${Math.max(...ns[i]!).toFixed(0)}), user ${
      med(user[i]!).toFixed(0)
    }${ratio}`,
  );
}
process.exit(0);
