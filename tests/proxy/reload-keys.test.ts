// Every key of the config is either applied by a reload or named in its answer as needing a
// restart. The table below has one entry per key of config/reference.yaml and of the schema; a
// key added to either without an entry here fails the first test. Each entry changes that one key
// in the reference config and reloads through the real reloader (plugins re-imported, gateway
// rebuilt): the answer's `restart_required` must name exactly the restart keys, and the config
// that goes live must be the new one (applied) or keep the running value (restart). How the
// applied keys take effect is shown end to end for a representative set in
// tests/proxy/reload-apply.test.ts (admin.token, admin.metrics, telemetry.traces, a pool key, a route
// key, plugins.watch) and tests/admin/operator-state.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { getLogger } from "@logtape/logtape";
import { parseDocument } from "yaml";
import { parseConfig } from "../../core/config/load.ts";
import { RESTART_KEYS } from "../../core/config/reloadable.ts";
import type { Config } from "../../core/config/schema.ts";
import { buildGateway, type Gateway } from "../../core/proxy/gateway.ts";
import { createReloader, type ServingState } from "../../core/proxy/reload.ts";
import { loadPlugins } from "../../core/plugins/load.ts";
import { bunRuntime } from "../../core/runtime/bun.ts";
import { builtinRegistry } from "../../main.ts";
import { schemaKeys, yamlKeys } from "../helpers/config-keys.ts";
import { TestPki } from "../helpers/tls.ts";

const FILE = new URL("../../config/reference.yaml", import.meta.url).pathname;
const TEXT = readFileSync(FILE, "utf8");

type Path = (string | number)[];
interface Entry {
  /** Applied by a reload, or kept until a restart (and named in `restart_required`). */
  kind: "applied" | "restart";
  /** The new value (`DELETE`: remove the key) ... */
  to: unknown;
  /** ... at this path; default: the key with `*` → web and `[]` → 0. */
  at?: Path;
  /** The restart keys the change names; default: the key itself. */
  names?: string[];
}
const DELETE = Symbol("delete");
// Backend TLS files a reload reads (pools.*.tls.ca, cert, key): real ones, made for this file.
const pki = new TestPki();
const client = pki.leaf("client", ["client.test"], { client: true });
const restartAt = (to: unknown, at: Path, names: string[]): Entry => ({ kind: "restart", to, at, names });
const applied = (to: unknown, at?: Path): Entry => ({ kind: "applied", to, ...(at ? { at } : {}) });
const restart = (to: unknown, names?: string[]): Entry => ({ kind: "restart", to, ...(names ? { names } : {}) });

const ETCD = { plugin: "../plugins/etcd.ts", options: { endpoints: ["http://127.0.0.1:2379"], prefix: "/services/web/" } };
const TABLE: Record<string, Entry> = {
  "listen": restart("127.0.0.1:8181"),
  // The list form: every listener (address, TLS settings, certificate entries, redirects) is bound
  // to its socket; rotated certificate files are re-read by a reload (tests/tls/rotation.test.ts).
  "listen[].address": restartAt(["127.0.0.1:8181", { address: "127.0.0.1:8443" }], ["listen"], ["listen"]),
  "listen[].redirect_https": restartAt([{ address: "127.0.0.1:8181", redirect_https: 443 }], ["listen"], ["listen"]),
  "listen[].tls": restartAt([{ address: "127.0.0.1:8443", tls: { certificates: [client] } }], ["listen"], ["listen"]),
  "listen[].tls.acme": restartAt(["127.0.0.1:8181", { address: "127.0.0.1:8443", tls: { acme: ["b.test"] } }], ["listen"], ["listen"]),
  "listen[].tls.alpn": restartAt([{ address: "127.0.0.1:8443", tls: { certificates: [client], alpn: ["http/1.1"] } }], ["listen"], [
    "listen",
  ]),
  "listen[].tls.certificates": restartAt([{ address: "127.0.0.1:8443", tls: { certificates: [client] } }], ["listen"], ["listen"]),
  "listen[].tls.certificates[].cert": restartAt([{ address: "127.0.0.1:8443", tls: { certificates: [client] } }], ["listen"], ["listen"]),
  "listen[].tls.certificates[].key": restartAt([{ address: "127.0.0.1:8443", tls: { certificates: [client] } }], ["listen"], ["listen"]),
  "listen[].tls.ciphers": restartAt([{
    address: "127.0.0.1:8443",
    tls: { certificates: [client], ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256" },
  }], [
    "listen",
  ], [
    "listen",
  ]),
  "listen[].tls.client_ca": restartAt(
    [{ address: "127.0.0.1:8443", tls: { certificates: [client], client_ca: pki.ca.cert } }],
    ["listen"],
    [
      "listen",
    ],
  ),
  "listen[].tls.handshake_timeout": restartAt([{ address: "127.0.0.1:8443", tls: { certificates: [client], handshake_timeout: "5s" } }], [
    "listen",
  ], [
    "listen",
  ]),
  "listen[].tls.min_version": restartAt([{ address: "127.0.0.1:8443", tls: { certificates: [client], min_version: "1.3" } }], ["listen"], [
    "listen",
  ]),
  // HTTP/2 keys of a listener (h2c on a plain one; http2 settings for h2c and ALPN h2).
  "listen[].h2c": restartAt([{ address: "127.0.0.1:8181", h2c: true }], ["listen"], ["listen"]),
  "listen[].http2": restartAt([{ address: "127.0.0.1:8181", http2: { max_concurrent_streams: 50 } }], ["listen"], ["listen"]),
  "listen[].http2.max_concurrent_streams": restartAt([{ address: "127.0.0.1:8181", http2: { max_concurrent_streams: 50 } }], ["listen"], [
    "listen",
  ]),
  "listen[].http2.initial_window_size": restartAt([{ address: "127.0.0.1:8181", http2: { initial_window_size: "64kib" } }], ["listen"], [
    "listen",
  ]),
  "listen[].http2.max_header_list_size": restartAt([{ address: "127.0.0.1:8181", http2: { max_header_list_size: "16kib" } }], ["listen"], [
    "listen",
  ]),
  // ACME's account and CA: the orders run from start to stop of the process.
  "acme": restart({ email: "ops@example.com" }),
  "acme.email": restart("ops@example.com", ["acme"]),
  "acme.directory": restart("https://127.0.0.1:14000/dir", ["acme"]),
  "acme.trusted_ca": restart(pki.ca.cert, ["acme"]),
  "acme.storage": restart("./acme-other", ["acme"]),
  "acme.renew_before": restart("10d", ["acme"]),
  "workers": restart(4),
  "shutdown_timeout": applied("10s"),
  "state_file": applied("fulcrum-state.json"),

  "pools": applied({ backends: ["http://127.0.0.1:9301"] }, ["pools", "extra"]), // a pool added
  "pools.*": applied({ strategy: "round-robin", backends: ["http://127.0.0.1:9101"] }, ["pools", "api"]),
  "pools.*.strategy": applied("round-robin"),
  "pools.*.strategy.name": applied({ name: "round-robin" }, ["pools", "api", "strategy"]),
  "pools.*.strategy.plugin": applied({ plugin: "../plugins/header-canary.ts" }, ["pools", "api", "strategy"]),
  "pools.*.strategy.options": applied({ header: "x-other", value: "2" }, ["pools", "beta", "strategy", "options"]),
  "pools.*.backends": applied(["http://127.0.0.1:9103"], ["pools", "api", "backends"]),
  "pools.*.backends[].url": applied("http://127.0.0.1:9011"),
  "pools.*.backends[].id": applied("web-1"),
  "pools.*.backends[].weight": applied(5),
  "pools.*.backends[].labels": applied({ zone: "b" }),
  // A discovered pool starts its new source; the members stay until it answers (tests/discovery/plugins.test.ts).
  "pools.*.discovery": applied({ dns: { name: "other.internal", port: 8081 } }, ["pools", "found", "discovery"]),
  "pools.*.discovery.dns": applied({ name: "_web._tcp.internal", type: "SRV" }, ["pools", "found", "discovery", "dns"]),
  "pools.*.discovery.dns.name": applied("api2.service.internal", ["pools", "found", "discovery", "dns", "name"]),
  "pools.*.discovery.dns.type": applied("AAAA", ["pools", "found", "discovery", "dns", "type"]),
  "pools.*.discovery.dns.port": applied(9090, ["pools", "found", "discovery", "dns", "port"]),
  "pools.*.discovery.dns.interval": applied("30s", ["pools", "found", "discovery", "dns", "interval"]),
  "pools.*.discovery.dns.resolver": applied("127.0.0.1:5353", ["pools", "found", "discovery", "dns", "resolver"]),
  "pools.*.discovery.dns.scheme": applied("https", ["pools", "found", "discovery", "dns", "scheme"]),
  "pools.*.discovery.plugin": applied(ETCD, ["pools", "found", "discovery"]),
  "pools.*.discovery.empty_after": applied("1m", ["pools", "found", "discovery", "empty_after"]),
  "pools.*.discovery.options": applied({ ...ETCD, options: { ...ETCD.options, prefix: "/other/" } }, ["pools", "found", "discovery"]),
  "pools.*.host_header": applied("backend"),
  "pools.*.timeouts": applied({ connect: "1s" }),
  "pools.*.timeouts.connect": applied("1s"),
  "pools.*.timeouts.response": applied("30s"),
  "pools.*.timeouts.request": applied("10s"),
  "pools.*.keepalive": applied({ max_idle: 8 }),
  "pools.*.keepalive.max_idle": applied(16),
  "pools.*.keepalive.idle_timeout": applied("2s"),
  "pools.*.health": applied(DELETE),
  "pools.*.health.method": applied("HEAD"),
  "pools.*.health.path": applied("/up"),
  "pools.*.health.host": applied("health.internal"),
  "pools.*.health.interval": applied("2s"),
  "pools.*.health.timeout": applied("2s"),
  "pools.*.health.jitter": applied("100ms"),
  "pools.*.health.healthy_threshold": applied(3),
  "pools.*.health.unhealthy_threshold": applied(2),
  "pools.*.health.expect_status": applied("200-299"),
  "pools.*.health.expect_body": applied("ok"),
  "pools.*.health.initial": applied("unknown"),
  "pools.*.outlier_detection": applied(DELETE),
  "pools.*.outlier_detection.consecutive_failures": applied(3),
  "pools.*.outlier_detection.on": applied(["connect"]),
  "pools.*.outlier_detection.ejection_time": applied("10s"),
  "pools.*.outlier_detection.max_ejection_time": applied("60s"),
  "pools.*.outlier_detection.max_ejected_percent": applied(30),
  "pools.*.circuit_breaker": applied(DELETE),
  "pools.*.circuit_breaker.failures": applied(3),
  "pools.*.circuit_breaker.failure_ratio": applied("10%"),
  "pools.*.circuit_breaker.window": applied("5s"),
  "pools.*.circuit_breaker.min_requests": applied(10),
  "pools.*.circuit_breaker.open_for": applied("10s"),
  "pools.*.circuit_breaker.half_open_requests": applied(2),
  "pools.*.retry": applied({ attempts: 3 }),
  "pools.*.retry.attempts": applied(3),
  "pools.*.retry.on": applied(["connect"]),
  "pools.*.retry.backoff": applied({ base: "50ms" }),
  "pools.*.retry.backoff.base": applied("50ms"),
  "pools.*.retry.backoff.max": applied("2s"),
  "pools.*.retry.budget": applied("30%"),
  "pools.*.retry.budget.ratio": applied("30%"),
  "pools.*.retry.budget.window": applied("20s"),
  "pools.*.retry.budget.min_retries_per_second": applied(5),
  "pools.*.retry.per_try_timeout": applied("5s"),
  "pools.*.retry.buffer_body_limit": applied("128kib"),
  "pools.*.max_inflight": applied({ backend: 10 }),
  "pools.*.max_inflight.backend": applied(10),
  "pools.*.max_inflight.pool": applied(100),
  "pools.*.panic": applied(true),
  // A reload builds the pool again, and its sticky table with it.
  "pools.*.sticky": applied(DELETE),
  "pools.*.sticky.cookie": applied("srv"),
  "pools.*.sticky.ttl": applied("2h"),
  "pools.*.sticky.secure": applied(true),
  "pools.*.sticky.http_only": applied(false),
  "pools.*.sticky.same_site": applied("strict"),
  "pools.*.sticky.path": applied("/app"),
  "pools.*.sticky.secret": applied("other"),
  // TLS to backends: a backend whose settings change is a new object (core/proxy/reuse.ts).
  "pools.*.tls": applied({ server_name: "backend.test" }),
  "pools.*.tls.ca": applied(pki.ca.cert),
  "pools.*.tls.cert": applied({ cert: client.cert, key: client.key }, ["pools", "web", "tls"]),
  "pools.*.tls.key": applied({ cert: client.cert, key: client.key }, ["pools", "web", "tls"]),
  "pools.*.tls.server_name": applied("backend.test"),
  "pools.*.tls.insecure_skip_verify": applied(true),

  "routes": applied([{ pool: "web" }]),
  "routes[].match": applied({ path: "/v2" }),
  "routes[].match.host": applied("api2.example.com"),
  "routes[].match.path": applied("/v2"),
  "routes[].pool": applied("web"),
  "routes[].retry_non_idempotent": applied(true),
  "routes[].websocket": applied(false),
  "routes[].upgrade": applied(["h2c"]),
  "routes[].timeouts": applied({ tunnel_idle: "5m" }),
  "routes[].timeouts.tunnel_idle": applied("10m"),
  "routes[].middleware": applied([]),
  "routes[].middleware[].name": applied({ name: "rate-limit", options: { rate: "10/s" } }, ["routes", 0, "middleware", 0]),
  "routes[].middleware[].plugin": applied("../plugins/response-headers.ts", ["routes", 0, "middleware", 1, "plugin"]),
  "routes[].middleware[].options": applied({ header: "x-key", keys: ["k"] }, ["routes", 0, "middleware", 1, "options"]),
  "routes[].middleware[].rate-limit": applied({ rate: "50/s" }),
  "routes[].middleware[].rate-limit.rate": applied("50/s"),
  "routes[].middleware[].rate-limit.burst": applied(300),
  "routes[].middleware[].rate-limit.key": applied("header:x-user"),
  "routes[].middleware[].rate-limit.trusted_proxies": applied(["192.168.0.0/16"]),
  "routes[].middleware[].rate-limit.max_keys": applied(1000),
  "routes[].middleware[].rate-limit.policy": applied("p2"),
  "routes[].middleware[].rate-limit.headers": applied(false),
  "routes[].match.path_regex": applied("^/v1/[a-z]+"),
  "routes[].match.methods": applied(["GET", "POST"]),
  "routes[].match.headers": applied({ "x-env": "prod" }),
  "routes[].match.query": applied({ v: "2" }),
  // The transforms of the reference config: routes[2] (/shop), routes[3] (redirect), routes[4] (respond).
  "routes[].middleware[].request-id": applied({ header: "x-trace-id" }, ["routes", 2, "middleware", 0, "request-id"]),
  "routes[].middleware[].request-id.header": applied("x-correlation-id", ["routes", 2, "middleware", 0, "request-id", "header"]),
  "routes[].middleware[].request-id.trust_incoming": applied(false, ["routes", 2, "middleware", 0, "request-id", "trust_incoming"]),
  "routes[].middleware[].strip-prefix": applied("/store", ["routes", 2, "middleware", 1, "strip-prefix"]),
  "routes[].middleware[].rewrite": applied({ regex: "^/a/(.*)", replace: "/b/$1" }, ["routes", 2, "middleware", 2, "rewrite"]),
  "routes[].middleware[].rewrite.regex": applied("^/v2/(.*)", ["routes", 2, "middleware", 2, "rewrite", "regex"]),
  "routes[].middleware[].rewrite.replace": applied("/x/$1", ["routes", 2, "middleware", 2, "rewrite", "replace"]),
  "routes[].middleware[].headers": applied({ response: { remove: ["via"] } }, ["routes", 2, "middleware", 3, "headers"]),
  "routes[].middleware[].redirect": applied({ to: "https://example.net/" }, ["routes", 3, "middleware", 0, "redirect"]),
  "routes[].middleware[].redirect.to": applied("/moved", ["routes", 3, "middleware", 0, "redirect", "to"]),
  "routes[].middleware[].redirect.status": applied(308, ["routes", 3, "middleware", 0, "redirect", "status"]),
  "routes[].middleware[].respond": applied({ status: 204 }, ["routes", 4, "middleware", 0, "respond"]),
  "routes[].middleware[].respond.status": applied(503, ["routes", 4, "middleware", 0, "respond", "status"]),
  "routes[].middleware[].respond.body": applied("up\n", ["routes", 4, "middleware", 0, "respond", "body"]),
  "routes[].middleware[].respond.headers": applied({ "x-up": "1" }, ["routes", 4, "middleware", 0, "respond", "headers"]),
  "routes[].middleware[].compress": applied({ min_size: 0 }, ["routes", 0, "middleware", 3, "compress"]),
  "routes[].middleware[].compress.types": applied(["text/html"], ["routes", 0, "middleware", 3, "compress", "types"]),
  "routes[].middleware[].compress.min_size": applied("4kib", ["routes", 0, "middleware", 3, "compress", "min_size"]),
  "routes[].middleware[].compress.encodings": applied(["gzip"], ["routes", 0, "middleware", 3, "compress", "encodings"]),
  "routes[].middleware[].compress.level": applied({ gzip: 1 }, ["routes", 0, "middleware", 3, "compress", "level"]),
  "routes[].middleware[].compress.level.gzip": applied(9, ["routes", 0, "middleware", 3, "compress", "level", "gzip"]),
  "routes[].middleware[].compress.level.br": applied(5, ["routes", 0, "middleware", 3, "compress", "level", "br"]),
  "routes[].middleware[].compress.level.zstd": applied(1, ["routes", 0, "middleware", 3, "compress", "level", "zstd"]),
  "routes[].middleware[].rate-limit.store": applied(DELETE),
  // Stores are opened by a reload (unchanged ones keep their connections: tests/stores/reload.test.ts).
  "stores": applied({ shared: { redis: "redis://127.0.0.1:6380/0" } }),
  "stores.*": applied({ redis: "redis://127.0.0.1:6380/0" }, ["stores", "shared"]),
  "stores.*.redis": applied("redis://127.0.0.1:6380/1", ["stores", "shared", "redis"]),
  "stores.*.prefix": applied("edge:", ["stores", "shared", "prefix"]),
  "stores.*.timeout": applied("100ms", ["stores", "shared", "timeout"]),
  "stores.*.on_error": applied("deny", ["stores", "shared", "on_error"]),
  "stores.*.batch": applied(false, ["stores", "shared", "batch"]),

  // How each takes effect, with workers too: tests/telemetry/log-reload.test.ts.
  "log": applied({ level: "debug" }),
  "log.level": applied("debug"),
  "log.access_log": applied(false),
  "log.access_log_file": applied("/tmp/fulcrum-access.log"),
  "log.access_format": applied("combined"),
  "log.fields": applied(["method", "path", "status"]),
  "plugins": applied({ watch: true }),
  "plugins.watch": applied(true),
  "limits": restart({ max_request_body: "1mb" }, ["limits.max_request_body"]),
  "limits.max_request_body": restart("1mb"),
  "limits.client_idle_timeout": restart("30s"),
  "limits.client_body_timeout": applied("30s"),

  "admin": restart(false, ["admin.enabled", "admin.listen"]),
  "admin.enabled": restart(false),
  "admin.listen": restart("127.0.0.1:9191"),
  "admin.token": applied("s3cret"),
  "admin.metrics": applied(false),
  "admin.insecure": applied(true),

  "telemetry": applied(DELETE),
  "telemetry.traces": applied(DELETE),
  "telemetry.traces.enabled": applied(false),
  "telemetry.traces.endpoint": applied("http://127.0.0.1:4319"),
  "telemetry.traces.protocol": applied("http/json"),
  "telemetry.traces.headers": applied({ authorization: "Bearer x" }),
  "telemetry.traces.sample_ratio": applied(0.5),
  "telemetry.traces.propagators": applied(["tracecontext"]),
  "telemetry.traces.max_queue_size": applied(4096),
  "telemetry.traces.max_export_batch_size": applied(256),
  "telemetry.traces.scheduled_delay": applied("2s"),
  "telemetry.traces.export_timeout": applied("5s"),
  "telemetry.traces.service_name": applied("edge"),
  "telemetry.metrics": applied(DELETE),
  "telemetry.metrics.endpoint": applied("http://127.0.0.1:4319/v1/metrics"),
  "telemetry.metrics.headers": applied({ authorization: "Bearer x" }),
  "telemetry.metrics.interval": applied("30s"),
  "telemetry.metrics.timeout": applied("5s"),
};

/** The concrete place of `key` in the reference config. */
function pathOf(key: string, e: Entry): Path {
  if (e.at) return e.at;
  return key.split(".").flatMap((part): Path => {
    if (part === "*") return ["web"];
    const list = /^(.+)\[\]$/.exec(part);
    return list ? [list[1]!, 0] : [part];
  });
}

const registry = builtinRegistry();
const parse = (text: string) =>
  parseConfig(text, {
    file: FILE,
    env: (n) => process.env[n],
    strategyNames: registry.strategyNames(),
    middlewareNames: registry.middlewareNames(),
  });
/** The config as JSON, without the names loading a plugin fills in (`strategy.name` of a plugin). */
const plain = (c: Config): unknown =>
  JSON.parse(JSON.stringify(c, (_k, v) => {
    if (v === null || typeof v !== "object" || !("plugin" in v)) return v;
    const { name: _name, ...rest } = v as Record<string, unknown>;
    return rest;
  }));
/** Paths where `a` and `b` differ ([] when equal). */
function diff(a: unknown, b: unknown, path = ""): string[] {
  if (a === b) return [];
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return [path || "(top)"];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) => diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k));
}

describe("every key of the reference config is applied by a reload or needs a restart", () => {
  test("the table has one entry per key of config/reference.yaml and of the schema, and no other", () => {
    const keys = new Set([...yamlKeys(TEXT), ...schemaKeys()]);
    expect([...keys].filter((k) => !(k in TABLE)).sort()).toEqual([]);
    expect(Object.keys(TABLE).filter((k) => !keys.has(k)).sort()).toEqual([]);
  });

  test("the restart keys of the table are the reloader's", () => {
    const leaves = Object.entries(TABLE).filter(([, e]) => e.kind === "restart" && !e.names).map(([k]) => k);
    expect(leaves.sort()).toEqual([...RESTART_KEYS].sort());
  });

  // One running state for all: each reload starts from the reference config again.
  let base: ServingState | undefined;
  const gateways: Gateway[] = [];
  afterAll(() => {
    pki.remove();
    for (const g of gateways) g.retire(base!.gateway);
    base?.gateway.close();
  });
  const logging = { logger: getLogger(["fulcrum-test-quiet"]), access: undefined, close: async () => {} };

  for (const [key, e] of Object.entries(TABLE)) {
    test(`${key}: ${e.kind === "applied" ? "applied" : `needs a restart (${(e.names ?? [key]).join(", ")})`}`, async () => {
      if (!base) {
        const config = parse(TEXT);
        const plugins = await loadPlugins(config, { runtime: bunRuntime, registry, fresh: false });
        base = { config, gateway: buildGateway(config, { registry: plugins.registry, logging }), files: plugins.files };
        base.gateway.activate();
      }
      const doc = parseDocument(TEXT);
      const at = pathOf(key, e);
      if (e.to === DELETE) {
        expect(doc.hasIn(at)).toBe(true);
        doc.deleteIn(at);
      } else doc.setIn(at, doc.createNode(e.to));
      const text = doc.toString();
      const changed = parse(text);
      expect(diff(plain(changed), plain(base.config))).not.toEqual([]); // the edit changes the config

      let current: ServingState = base;
      const reload = createReloader({
        runtime: bunRuntime,
        deps: { registry, logging, loadConfig: async () => parse(text) },
        build: buildGateway,
        current: () => current,
        swap: (next) => {
          current = next;
          gateways.push(next.gateway);
        },
        stopping: () => false,
      });
      const r = await reload();
      expect(r.problems).toEqual([]);
      expect(r.ok).toBe(true);
      if (e.kind === "applied") {
        expect(r.restartRequired).toEqual([]);
        // The new gateway was built from the new config, as written.
        expect(diff(plain(current.config), plain(changed))).toEqual([]);
      } else {
        expect([...r.restartRequired].sort()).toEqual((e.names ?? [key]).sort());
        // Nothing else changed, and the running values stay.
        expect(diff(plain(current.config), plain(base.config))).toEqual([]);
      }
    });
  }
});
