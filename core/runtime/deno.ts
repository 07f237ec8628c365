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
import { denoConnect } from "./deno-tcp.ts";
import { serveRawDeno } from "./deno-listener.ts";
import { rawUpstreamClient, setPartCopyLimit } from "../upstream/raw-client.ts";
import { nodeUpstreamClient } from "../upstream/node.ts";
import type { UpstreamClient } from "../upstream/types.ts";

// Deno's global is declared loosely so the Bun-typed project type-checks without Deno's lib.
// deno-lint-ignore no-explicit-any
declare const Deno: any;

async function serve(options: ServeOptions): Promise<Listener> {
  // Plain HTTP/1.1 proxy ports on our own listener (deno-listener.ts) unless FULCRUM_DENO_SERVE=1
  // asks for Deno.serve; TLS and h2c ports, and the admin listener (no `raw`), on Deno.serve.
  if (options.raw !== undefined && options.tls === undefined && !options.h2c && Deno.env.get("FULCRUM_DENO_SERVE") !== "1") {
    return serveRawDeno({ ...options, raw: options.raw }, options.onError ?? (() => {}));
  }
  // TLS under Deno: Deno.serve takes one certificate, so the listener's first one is served to
  // every client (no SNI choice, no rotation until restart, no client certificates). Bun does all of it.
  let tls: { cert: string; key: string } | undefined;
  if (options.tls !== undefined) {
    const c = options.tls.defaultCertificate();
    if (c === undefined) throw new Error("TLS under Deno needs a certificate file (ACME-only listeners need Bun)");
    if (options.tls.clientCa !== undefined) throw new Error("client certificates (tls.client_ca) need Bun");
    tls = { cert: c.cert, key: c.key };
  }
  const ac = new AbortController();
  let resolveListening!: (addr: { hostname: string; port: number }) => void;
  const listening = new Promise<{ hostname: string; port: number }>((r) => (resolveListening = r));
  const server = Deno.serve(
    {
      hostname: options.hostname,
      port: options.port,
      reusePort: options.reusePort ?? false,
      signal: ac.signal,
      onListen: resolveListening,
      ...(tls ?? {}),
    },
    // deno-lint-ignore no-explicit-any
    (request: Request, info: any) => options.fetch(withTargetHost(request), info.remoteAddr?.hostname ?? ""),
  );
  const addr = await listening;
  return {
    hostname: addr.hostname,
    port: addr.port,
    close: async () => {
      await server.shutdown();
    },
    forceClose: async () => {
      ac.abort();
      await server.finished;
    },
  };
}

/**
 * Deno builds `request.url` from the Host line for an origin-form target and from the target for
 * an absolute-form one (`GET http://a.test/p`), leaving the Host header as sent. Where the two
 * differ, the target's authority replaces the Host line (RFC 9112 §3.2.2), as on Bun's listener.
 */
function withTargetHost(request: Request): Request {
  const host = request.headers.get("host");
  if (host === null) return request;
  const url = request.url;
  const start = url.indexOf("//") + 2;
  let end = start;
  while (end < url.length && url[end] !== "/" && url[end] !== "?") end++;
  if (end - start === host.length && url.startsWith(host, start)) return request;
  const headers = new Headers(request.headers);
  headers.set("host", url.slice(start, end));
  return new Request(request, { headers });
}

function openWriter(target: "stdout" | "stderr" | { path: string }, options?: WriterOptions): Writer {
  const open = () =>
    target === "stdout"
      ? Deno.stdout
      : target === "stderr"
      ? Deno.stderr
      : Deno.openSync(target.path, { write: true, create: true, append: true });
  let file = open();
  return new BatchingWriter(
    {
      write(bytes) {
        let off = 0;
        while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
      },
      flush() {},
      close: () => {
        if (typeof target === "object") file.close();
        return Promise.resolve();
      },
      reopen: typeof target === "object"
        ? () => {
          const old = file;
          file = open();
          old.close();
        }
        : undefined,
    },
    options?.chunk,
  );
}

/**
 * Plain-HTTP backends through our raw HTTP/1.1 client on `Deno.connect` (deno-tcp.ts), as on Bun;
 * `https:` backends through node:http, whose TLS settings Deno.connectTls cannot all express (no
 * insecure_skip_verify). FULCRUM_DENO_UPSTREAM=node sends every backend through node:http.
 */
const raw = rawUpstreamClient(denoConnect);
// A small body as a view of its read (deno-tcp.ts reads into node:buffer's pool), not a copy: a
// new Uint8Array costs V8 ~0.7 µs.
setPartCopyLimit(0);
const upstreamClient: UpstreamClient = Deno.env.get("FULCRUM_DENO_UPSTREAM") === "node"
  ? nodeUpstreamClient
  : (target, options) => (target.protocol === "https:" ? nodeUpstreamClient(target, options) : raw(target, options));

let generation = 0;

/**
 * Deno resolves `"fulcrum"` through the import map in deno.json (→ core/plugins/host-module.ts).
 * A query string makes Deno re-read the plugin file on reload, but not the helper files it
 * imports: those keep their first version until the process restarts (documented in README).
 */
async function importPlugin(absPath: string, { fresh }: { fresh: boolean }): Promise<ImportedPlugin> {
  try {
    await Deno.stat(absPath);
  } catch {
    throw new PluginImportError("not-found", `cannot find the file ${absPath}`);
  }
  const url = new URL(`file://${absPath}`).href + (fresh ? `?v=${++generation}` : "");
  try {
    return { module: await import(url), files: [absPath] };
  } catch (e) {
    const message = String((e as Error)?.message ?? e).replaceAll(url, absPath).replaceAll("file://", "");
    const syntax = /could not be parsed|SyntaxError|Expected|Unexpected/.test(message);
    throw new PluginImportError(syntax ? "syntax" : "load", syntax ? `syntax error: ${message}` : `failed while loading: ${message}`, {
      cause: e,
    });
  }
}

export const denoRuntime: Runtime = {
  name: "deno",
  version: Deno.version.deno,
  serve,
  onSignal(signal, handler) {
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  },
  readTextFile: (path) => Deno.readTextFile(path),
  env: (name) => Deno.env.get(name),
  args: () => [...Deno.args],
  cwd: () => Deno.cwd(),
  openWriter,
  exit: (code): never => Deno.exit(code) as never,
  importPlugin,
  kill: (pid, signal) => Deno.kill(pid, signal),
  upstreamClient,
};
