/**
 * The admin listener. The port is bound at start, before the proxy's (a busy explicit
 * `admin.listen` still stops the start before anything serves); the admin API behind it (Hono and
 * node:crypto, ~15 ms of CPU from source) is loaded by its first request, so it is not on the way
 * to the first proxied response.
 */
import type { AdminOptions } from "./admin.ts";
import type { Listener, Runtime } from "../runtime/types.ts";

/** Where the admin listener goes when `admin.listen` is not set. */
export const DEFAULT_ADMIN_LISTEN = { hostname: "127.0.0.1", port: 9090 };

export interface AdminListener {
  readonly url: string;
  readonly listener: Listener;
  close(): Promise<void>;
}

/**
 * Start the admin listener. An explicit `admin.listen` that cannot be bound is an error; the
 * default one (127.0.0.1:9090) being busy only logs a warning, so a second Fulcrum on the same
 * machine still starts. Returns undefined when there is no listener.
 */
export async function startAdmin(runtime: Runtime, o: AdminOptions): Promise<AdminListener | undefined> {
  const cfg = o.config.admin;
  if (!cfg.enabled) return undefined;
  const where = cfg.listen ?? DEFAULT_ADMIN_LISTEN;
  // The app reads everything from `o` per request, so making it at the first request is the same.
  let app: Promise<{ fetch(request: Request): Response | Promise<Response> }> | undefined;
  // A failed load (a file changed or removed under a running process) is logged and tried again
  // by the next request, which gets a 500 meanwhile, instead of failing every admin request silently.
  const loadApp = () =>
    import("./admin.ts").then((m) => m.createAdminApp(o), (e: unknown) => {
      app = undefined;
      o.logger.error("the admin API could not be loaded: {error}", { error: e instanceof Error ? e.message : String(e) });
      throw e;
    });
  let listener: Listener;
  try {
    listener = await runtime.serve({
      hostname: where.hostname,
      port: where.port,
      fetch: async (request) => (await (app ??= loadApp())).fetch(request),
      maxRequestBodySize: 1024 * 1024,
      idleTimeoutSeconds: 10,
    });
  } catch (e) {
    const msg = `admin listener on ${where.hostname}:${where.port}: ${(e as Error).message}`;
    if (cfg.listen) throw new Error(`${msg} (set admin.listen to another address, or admin: false)`, { cause: e });
    o.logger.warning("{message}; the admin API is off (set admin.listen to choose another port)", { message: msg });
    return undefined;
  }
  const host = listener.hostname.includes(":") ? `[${listener.hostname}]` : listener.hostname;
  return { url: `http://${host}:${listener.port}`, listener, close: () => listener.forceClose() };
}
