/** Example backends for `fulcrum demo`: each names itself in `x-backend` and echoes the request. */
import type { Listener, Runtime } from "../runtime/types.ts";

export async function startDemoBackends(runtime: Runtime, ports: readonly number[]): Promise<Listener[]> {
  const listeners: Listener[] = [];
  for (const [i, port] of ports.entries()) {
    const name = `demo-${i + 1}`;
    listeners.push(
      await runtime.serve({
        hostname: "127.0.0.1",
        port,
        maxRequestBodySize: 1024 * 1024,
        idleTimeoutSeconds: 30,
        fetch(request) {
          const url = new URL(request.url);
          const body = JSON.stringify(
            {
              backend: name,
              method: request.method,
              path: url.pathname + url.search,
              headers: Object.fromEntries(request.headers),
            },
            null,
            2,
          );
          return new Response(`${body}\n`, { headers: { "content-type": "application/json", "x-backend": name } });
        },
      }),
    );
  }
  return listeners;
}
