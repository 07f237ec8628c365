/**
 * TLS in `/metrics`, read at scrape time from the listeners' counts and the certificates: nothing
 * is counted through prom-client on the request path.
 */
import type { Registry } from "prom-client";
import Counter from "prom-client/lib/counter.js";
import Gauge from "prom-client/lib/gauge.js";
import type { TlsManager } from "./manager.ts";

/** Register the TLS series on `registry`; `tls()` is the running server's (undefined before it starts). */
export function registerTlsMetrics(registry: Registry, tls: () => TlsManager | undefined): void {
  const registers = [registry];
  new Counter({
    name: "fulcrum_listener_requests_total",
    help: "Requests received, by listener and scheme (https on TLS listeners).",
    labelNames: ["listener", "scheme"],
    registers,
    collect() {
      this.reset();
      for (const s of tls()?.stats ?? []) this.inc({ listener: s.name, scheme: s.scheme }, s.requests);
    },
  });
  new Counter({
    name: "fulcrum_tls_handshakes_total",
    help: "TLS handshakes by listener and result: ok, or why it failed (http_request, not_tls, protocol_version, timeout, ...).",
    labelNames: ["listener", "result"],
    registers,
    collect() {
      this.reset();
      for (const s of tls()?.stats ?? []) for (const [result, n] of s.handshakes) this.inc({ listener: s.name, result }, n);
    },
  });
  new Gauge({
    name: "fulcrum_tls_certificate_expiry_days",
    help: "Days until each served certificate expires (negative once expired), by listener, name and source (file or acme).",
    labelNames: ["listener", "name", "source"],
    registers,
    aggregator: "min",
    collect() {
      this.reset();
      for (const c of tls()?.status() ?? []) {
        if (c.days_left !== null) this.set({ listener: c.listener, name: c.names[0] ?? "", source: c.source }, c.days_left);
      }
    },
  });
}
