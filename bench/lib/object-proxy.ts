/**
 * Fulcrum's proxy path without the kernel, for in-process micro benchmarks (wire-micro.ts,
 * alloc-micro.ts): the checkout at `root`'s own listener (core/listener), the gateway's direct
 * route and the raw upstream client (core/upstream), over sockets that are objects. A request's
 * bytes go to the listener as a fresh Buffer (as Bun hands over a read); every upstream request is
 * answered with `response` in a later microtask, as a fresh read.
 */
import { Buffer } from "node:buffer";

export type Handlers = Record<string, (...a: unknown[]) => void>;

/** A socket object that counts what is written to it (WIRE_DEBUG=1 prints it). */
export function objectSocket(onWrite: (n: number) => void) {
  return {
    data: undefined as unknown,
    remoteAddress: "127.0.0.1",
    write(b: Uint8Array | string, off?: number, len?: number) {
      if (process.env.WIRE_DEBUG && typeof b !== "string") {
        console.log(Buffer.from(b).toString("latin1", off ?? 0, Math.min((off ?? 0) + 300, b.length)));
      }
      const n = len ?? (typeof b === "string" ? b.length : b.length - (off ?? 0));
      onWrite(n);
      return n;
    },
    timeout() {},
    setNoDelay() {},
    pause() {},
    resume() {},
    end() {},
    terminate() {},
    shutdown() {},
  };
}

/** The modules a bench builds its gateway with, loaded from the checkout measured. */
export interface ProxyModules {
  // deno-lint-ignore no-explicit-any
  parseConfig: any;
  // deno-lint-ignore no-explicit-any
  buildGateway: any;
  // deno-lint-ignore no-explicit-any
  builtinRegistry: any;
  root: string;
}

/** The bench's pool of three backends behind one route; `extra` YAML after it. */
export const BENCH_YAML = (extra = "") =>
  `pools:\n  bench:\n    strategy: round-robin\n    backends: ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]\n` +
  `routes:\n  - match: { path: / }\n    pool: bench\n${extra}`;

/**
 * The proxy of the checkout at `root`, its gateway made by `gateway`: returns a driver that sends
 * `n` requests on each of `conns` connections, one at a time on each, and resolves when all are
 * answered (an answer is complete once `size` bytes were written).
 */
export async function objectProxy(
  root: string,
  o: {
    request: Buffer;
    response: Buffer;
    size: number;
    conns: number;
    // deno-lint-ignore no-explicit-any
    gateway: (m: ProxyModules) => any | Promise<any>;
  },
): Promise<(n: number) => Promise<void>> {
  const { RawServer } = await import(`${root}/core/listener/server.ts`);
  const { rawUpstreamClient } = await import(`${root}/core/upstream/raw-client.ts`);
  const { useUpstreamClient } = await import(`${root}/core/upstream/client.ts`);
  const { parseConfig } = await import(`${root}/core/config/load.ts`);
  const { buildGateway } = await import(`${root}/core/proxy/gateway.ts`);
  const { builtinRegistry } = await import(`${root}/main.ts`);
  useUpstreamClient(rawUpstreamClient(
    ((c: { handlers: Handlers; data: unknown }) => {
      const s = objectSocket(() => queueMicrotask(() => c.handlers.data!(s, Buffer.from(o.response))));
      s.data = c.data;
      queueMicrotask(() => c.handlers.open!(s));
      return Promise.resolve(s);
    }) as never,
  ));
  const gw = await o.gateway({ parseConfig, buildGateway, builtinRegistry, root });
  gw.activate?.();
  const server = new RawServer((ex: unknown) => void gw.handle(ex), { maxBody: 0, idleSeconds: 60, headerTimeoutMs: 0 }, (e: unknown) => {
    throw e;
  });
  let handlers!: Handlers;
  server.listen((h: Handlers) => ((handlers = h), { hostname: "127.0.0.1", port: 1, stop() {} }));

  return (n) =>
    new Promise((done) => {
      let open = o.conns;
      for (let c = 0; c < o.conns; c++) {
        let left = n;
        let got = 0;
        const s = objectSocket((bytes) => {
          got += bytes;
          if (got < o.size) return;
          got = 0;
          // The next request in a later turn, as the next read would come.
          if (--left > 0) setImmediate(() => handlers.data!(s, Buffer.from(o.request)));
          else if (--open === 0) done();
        });
        handlers.open!(s);
        handlers.data!(s, Buffer.from(o.request));
      }
    });
}
