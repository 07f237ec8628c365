// The calibration proxy: the least a proxy on Bun can do per request, as a floor to measure
// Fulcrum against (bench/cpu-ladder.ts). Raw TCP both sides (Bun.listen, Bun.connect), a keep-alive
// pool per backend, round robin. NOT a proxy to use: no header handling, no validation, only
// GETs without a body, only responses with a Content-Length, one request at a time per connection.
//   CAL_PORT=18089 CAL_BACKENDS=http://127.0.0.1:19001,... bun bench/lib/calibration-proxy.ts
import type { Socket } from "bun";

const port = Number(process.env.CAL_PORT ?? 18089);
const backends = (process.env.CAL_BACKENDS ?? "http://127.0.0.1:19001").split(",").map((u) => new URL(u));
type Up = { client: Socket<unknown> | undefined; need: number; idle: Up[]; socket: Socket<Up> | undefined };
const pools: Up[][] = backends.map(() => []);
const latin1 = new TextDecoder("latin1");
let next = 0;

function headEnd(b: Uint8Array): number {
  for (let i = 3; i < b.length; i++) if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i + 1;
  return -1;
}

function upstream(i: number, use: (u: Up) => void): void {
  const u = pools[i]!.pop();
  if (u !== undefined) return use(u);
  const fresh: Up = { client: undefined, need: -1, idle: pools[i]!, socket: undefined };
  void Bun.connect<Up>({
    hostname: backends[i]!.hostname,
    port: Number(backends[i]!.port),
    data: fresh,
    socket: {
      open(s) {
        s.data.socket = s;
        use(s.data);
      },
      data(s, chunk) {
        const up = s.data;
        if (up.need < 0) {
          const end = headEnd(chunk);
          const m = /content-length:\s*(\d+)/i.exec(latin1.decode(chunk.subarray(0, end)));
          up.need = end + Number(m?.[1] ?? 0);
        }
        up.client?.write(chunk);
        up.need -= chunk.length;
        if (up.need <= 0) {
          up.need = -1;
          up.client = undefined;
          up.idle.push(up);
        }
      },
      close(s) {
        const k = s.data.idle.indexOf(s.data);
        if (k >= 0) s.data.idle.splice(k, 1);
      },
      error() {},
    },
  });
}

Bun.listen({
  hostname: "127.0.0.1",
  port,
  socket: {
    data(s, chunk) {
      const head = latin1.decode(chunk.subarray(0, headEnd(chunk)));
      const line = head.slice(0, head.indexOf("\r\n"));
      const b = next++ % backends.length;
      upstream(b, (u) => {
        u.client = s;
        u.socket!.write(`${line}\r\nhost: ${backends[b]!.host}\r\n\r\n`);
      });
    },
    error() {},
  },
});
process.on("SIGTERM", () => process.exit(0));
