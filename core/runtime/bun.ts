import type { Listener, Runtime, ServeOptions, Writer } from "./types.ts";
import { useUpstreamClient } from "../upstream.ts";
import { bunUpstreamClient } from "./bun-pool.ts";

function serve(options: ServeOptions): Promise<Listener> {
  const server = Bun.serve({
    hostname: options.hostname,
    port: options.port,
    reusePort: options.reusePort ?? false,
    maxRequestBodySize: options.maxRequestBodySize,
    idleTimeout: options.idleTimeoutSeconds,
    fetch(request, srv) {
      // A slow backend must be bounded by the pool's timeouts, not by the client idle timer.
      srv.timeout(request, 0);
      return options.fetch(request, srv.requestIP(request)?.address ?? "");
    },
    error(error) {
      return new Response("internal error\n", { status: 500, headers: { "content-type": "text/plain" } });
    },
  });
  return Promise.resolve({
    hostname: server.hostname ?? options.hostname,
    port: server.port ?? options.port,
    close: () => server.stop(false),
    forceClose: () => server.stop(true),
  });
}

function openWriter(target: "stdout" | "stderr" | { path: string }): Writer {
  const file = target === "stdout" ? Bun.stdout : target === "stderr" ? Bun.stderr : Bun.file(target.path);
  const sink = file.writer({ highWaterMark: 64 * 1024 });
  // FileSink buffers until highWaterMark; flush on a short timer so lines appear promptly.
  let pending = false;
  const flushSoon = () => {
    pending = false;
    sink.flush();
  };
  return {
    write(text) {
      sink.write(text);
      if (!pending) {
        pending = true;
        setTimeout(flushSoon, 50).unref();
      }
    },
    flush: () => void sink.flush(),
    close: async () => {
      await sink.flush();
      if (typeof target === "object") await sink.end();
    },
  };
}

export const bunRuntime: Runtime = {
  name: "bun",
  version: Bun.version,
  serve,
  onSignal(signal, handler) {
    process.on(signal, handler);
    return () => process.off(signal, handler);
  },
  readTextFile: (path) => Bun.file(path).text(),
  env: (name) => Bun.env[name],
  // Both `bun main.ts …` and the compiled binary put two entries before the arguments.
  args: () => process.argv.slice(2),
  cwd: () => process.cwd(),
  openWriter,
  exit: (code) => process.exit(code),
  upstreamClient: bunUpstreamClient,
};

// Choosing this runtime chooses its upstream client. main.ts imports this module only on Bun,
// so this stays the one runtime decision; the pools built afterwards use the raw-TCP client.
useUpstreamClient(bunUpstreamClient);
