import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { bunProcesses } from "./bun-processes.ts"; // workers (core/cluster/)
import {
  PluginImportError,
  type ImportedPlugin,
  type Listener,
  type Runtime,
  type ServeOptions,
  type Writer,
  type WriterOptions,
} from "./types.ts";
import { BatchingWriter } from "./batching-writer.ts";
import { rawUpstreamClient, setWholeResponseLimit } from "../upstream/raw-client.ts";
import type { TcpConnect, TcpSocket } from "./types.ts";
import type { UpstreamTls } from "../upstream/client.ts";
import { isIP } from "../lib/ip.ts";
import { serveRaw } from "./bun-listener.ts";

function serve(options: ServeOptions): Promise<Listener> {
  // Our own HTTP/1.1 listener (bun-listener.ts) unless FULCRUM_BUN_SERVE=1 asks for Bun.serve; TLS ports always.
  if (options.raw !== undefined && (Bun.env.FULCRUM_BUN_SERVE !== "1" || options.tls !== undefined)) {
    // Set on both branches: the limit is per process and a test run serves both ways (a TLS port
    // under FULCRUM_BUN_SERVE=1 keeps the Bun.serve limit its plain ports need).
    if (Bun.env.FULCRUM_BUN_SERVE !== "1") setWholeResponseLimit(64 * 1024);
    return serveRaw({ ...options, raw: options.raw }, options.onError ?? (() => {}));
  }
  // The proxy port on Bun.serve, which sends a response in one piece only within its 16 KiB cork
  // buffer (core/upstream/raw-response.ts). Not for the admin listener (no `raw`): it proxies nothing.
  if (options.raw !== undefined) setWholeResponseLimit(16 * 1024 - 512);
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
    error(_error) {
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

/**
 * The flush of every open writer: run before the process exits, so lines still gathered (at most
 * 50 ms of them) are not lost on an exit that does not close the logging first (a failed start-up,
 * a worker leaving before it listens, an uncaught error).
 */
const openWriters = new Set<() => void>();
process.on("exit", () => {
  for (const flush of openWriters) flush();
});

function openWriter(target: "stdout" | "stderr" | { path: string }, options?: WriterOptions): Writer {
  // workers: a file is opened for appending, so several worker processes can share one access log
  // (each write lands at the end) and a restart does not truncate it.
  const open = () => {
    const fd = typeof target === "object" ? openSync(target.path, "a") : undefined;
    const file = target === "stdout" ? Bun.stdout : target === "stderr" ? Bun.stderr : Bun.file(fd!);
    // FileSink.write copies what it is given (or writes it at once), so the batching buffer is reused.
    return { fd, sink: file.writer({ highWaterMark: 64 * 1024 }) };
  };
  let out = open();
  const end = async ({ fd, sink }: ReturnType<typeof open>) => {
    await sink.flush();
    if (fd !== undefined) {
      await sink.end();
      closeSync(fd);
    }
  };
  const writer = new BatchingWriter(
    {
      write: (bytes) => void out.sink.write(bytes),
      flush: () => void out.sink.flush(),
      close: () => {
        openWriters.delete(flush);
        return end(out);
      },
      reopen: typeof target === "object"
        ? () => {
          // Flushed already (BatchingWriter.reopen): the new file takes every later write.
          const old = out;
          out = open();
          void end(old).catch(() => {});
        }
        : undefined,
    },
    options?.chunk,
  );
  const flush = () => writer.flush();
  openWriters.add(flush);
  return writer;
}

let hostRegistered: Promise<void> | undefined;
let bundles = 0;
const imported = new Map<string, ImportedPlugin & { hash: bigint | number }>();

/**
 * Bundle the plugin with its local imports into one temporary file and import that: a unique
 * file name is the only way to make Bun re-evaluate changed helper files on reload (DESIGN.md §6),
 * and bundling also reports syntax errors with their line and column.
 */
async function importPlugin(absPath: string, { fresh }: { fresh: boolean }): Promise<ImportedPlugin> {
  // Imported with the first user plugin: the "fulcrum" module re-exports Hono, which a config without plugins never loads.
  await (hostRegistered ??= import("../plugins/host-module.ts").then((host) => {
    Bun.plugin({ name: "fulcrum", setup: (b) => void b.module("fulcrum", () => ({ exports: { ...host }, loader: "object" })) });
  }));
  const previous = imported.get(absPath);
  if (previous && !fresh) return previous;
  if (!(await Bun.file(absPath).exists())) throw new PluginImportError("not-found", `cannot find the file ${absPath}`);
  let build: Bun.BuildOutput;
  try {
    build = await Bun.build({ entrypoints: [absPath], target: "bun", format: "esm", external: ["fulcrum"], metafile: true, throw: false });
  } catch (e) {
    throw new PluginImportError("syntax", String((e as Error).message ?? e), { cause: e });
  }
  if (!build.success || !build.outputs[0]) {
    const log = build.logs.find((l) => l.level === "error") ?? build.logs[0];
    const pos = log?.position;
    // Bun's line and column are 1-based.
    const where = pos ? `${pos.file || absPath}:${pos.line}:${pos.column}` : absPath;
    const reason = log && /could not resolve|not found/i.test(log.message) ? "cannot resolve an import" : "syntax error";
    throw new PluginImportError("syntax", `${reason} at ${where}: ${log?.message ?? "build failed"}`);
  }
  const code = await build.outputs[0].text();
  const hash = Bun.hash(code);
  if (previous && previous.hash === hash) return previous;
  // A folder of its own, removed once imported: nothing is left in the temp dir.
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-plugin-"));
  const file = join(dir, `${basename(absPath).replace(/\.[^.]+$/, "")}-${++bundles}.js`);
  let module: Record<string, unknown>;
  try {
    await Bun.write(file, code);
    module = await import(file);
  } catch (e) {
    throw new PluginImportError("load", `failed while loading: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const inputs = Object.keys(build.metafile?.inputs ?? {}).map((p) => resolve(process.cwd(), p));
  const result = { module, files: inputs.length ? inputs : [absPath], hash };
  imported.set(absPath, result);
  return result;
}

/** Bun's TLS options for a backend (pools.<name>.tls); `true` for the defaults. */
function connectTls(hostname: string, tls: boolean | UpstreamTls): boolean | Bun.TLSOptions {
  if (typeof tls === "boolean") return tls;
  // The name to send and verify: the configured one, else the URL's host unless it is an address.
  const serverName = tls.serverName ?? (isIP(hostname) ? undefined : hostname);
  return {
    rejectUnauthorized: tls.verify,
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(serverName !== undefined ? { serverName } : {}),
    ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
  };
}

/** The raw upstream client's TCP connect: Bun's sockets and handlers have the shape of TcpSocket and TcpHandlers. */
const bunConnect: TcpConnect = (o) =>
  Bun.connect({
    hostname: o.hostname,
    port: o.port,
    socket: o.handlers as Bun.SocketHandler<typeof o.data>,
    data: o.data,
    tls: connectTls(o.hostname, o.tls),
  }) as Promise<
    TcpSocket<typeof o.data>
  >;

/** Our HTTP/1.1 client on raw TCP (core/upstream/raw-client.ts), the runtime's upstream client. */
export const bunUpstreamClient = rawUpstreamClient(bunConnect);

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
  importPlugin,
  kill: (pid, signal) => void process.kill(pid, signal),
  upstreamClient: bunUpstreamClient,
  processes: bunProcesses, // workers (core/cluster/)
};
