// A tiny proxy loop and backends for the telemetry tests: just enough of the real request path
// (server span, one client span per attempt, inject, retry on 503) to exercise the tracing API.
import type { Telemetry } from "../../core/telemetry/tracing.ts";

export interface RecordingBackend {
  url: string;
  /** Headers of every request received, in order. */
  received: Headers[];
  stop(): Promise<void>;
}

/** A loopback backend answering `status` and recording request headers. */
export function startBackend(status = 200): RecordingBackend {
  const received: Headers[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      received.push(req.headers);
      return new Response(status === 200 ? "hello" : "unavailable", { status });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, received, stop: () => server.stop(true) };
}

export interface TestProxy {
  url: string;
  stop(): Promise<void>;
}

/**
 * Tries `backends` in order; a 503 or a connection error moves on to the next one. Adds the
 * access-log ids as `x-trace-id`/`x-span-id` response headers so tests can see them.
 */
export function startTestProxy(tel: Telemetry, backends: string[], route = "api"): TestProxy {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req, srv) {
      const clientIp = srv.requestIP(req)?.address ?? "";
      const serverSpan = tel.startServerSpan(req, route, clientIp);
      const path = new URL(req.url).pathname;
      let retryReason: string | undefined;
      let lastError: unknown;
      for (let i = 0; i < backends.length; i++) {
        const url = backends[i] + path;
        const clientSpan = serverSpan && tel.startClientSpan(serverSpan, {
          pool: "web",
          backend: `b${i + 1}`,
          strategy: "round-robin",
          attempt: i + 1,
          url,
          retryReason,
        });
        const headers = new Headers();
        tel.inject(clientSpan, headers);
        try {
          const res = await fetch(url, { headers });
          const body = await res.text();
          tel.endClient(clientSpan, res.status);
          if (res.status === 503 && i < backends.length - 1) {
            retryReason = "status_503";
            continue;
          }
          const ids = tel.ids(serverSpan);
          tel.endServer(serverSpan, res.status);
          return new Response(body, {
            status: res.status,
            headers: { "x-trace-id": ids?.trace_id ?? "", "x-span-id": ids?.span_id ?? "" },
          });
        } catch (err) {
          tel.endClient(clientSpan, 0, err);
          lastError = err;
          retryReason = "connect_error";
        }
      }
      tel.endServer(serverSpan, 502, lastError);
      return new Response("bad gateway", { status: 502 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}
