/**
 * Backends from etcd v3: every key under a prefix is one backend, through etcd's JSON gateway
 * (no client library, only `fetch`). The value is the backend's URL, optionally followed by its
 * weight (`http://10.0.0.11:8080 weight=3`), or JSON (`{"url": "http://10.0.0.11:8080", "weight": 3}`).
 *
 *   pools:
 *     web:
 *       discovery:
 *         plugin: ./plugins/etcd.ts
 *         options: { endpoints: ["http://10.0.0.2:2379"], prefix: /services/web/ }
 *
 * It reads the prefix once (`/v3/kv/range`), yields that list, then follows changes with a watch
 * from the next revision (`/v3/watch`, a stream of JSON lines), yielding the new list after each
 * batch of events. When etcd cannot be reached or the watch ends, it throws: Fulcrum keeps the
 * last list and calls `create()` again with backoff, which reads the prefix afresh. Several
 * Fulcrum instances watching the same prefix see the same backends.
 *
 * A value that is not a URL is logged and skipped. Deleting every key leaves an empty list, which
 * Fulcrum treats as a failed answer: the last list keeps serving.
 */
import type { DiscoveredBackend, DiscoveryPlugin } from "fulcrum";

interface Options {
  /** etcd client URLs, tried in turn. Required. */
  endpoints: string[];
  /** The key prefix, e.g. `/services/web/`. Required. */
  prefix: string;
  /** Give up on a request (not the watch) after this many milliseconds. @default 3000 */
  timeout_ms?: number;
}

interface KeyValue {
  key: string;
  value?: string;
  mod_revision?: string;
}

const encoder = new TextEncoder();
const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const text = (base64: string) => new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));

/** etcd's range end for "every key with this prefix": the prefix with its last byte plus one. */
function prefixEnd(prefix: Uint8Array): Uint8Array {
  const end = prefix.slice();
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.slice(0, i + 1);
    }
  }
  return new Uint8Array([0]); // all keys
}

/** A value as a backend, or the reason it is not one. */
function parseValue(key: string, value: string): DiscoveredBackend | string {
  const v = value.trim();
  let url: unknown;
  let weight: unknown;
  if (v.startsWith("{")) {
    try {
      ({ url, weight } = JSON.parse(v) as { url?: unknown; weight?: unknown });
    } catch {
      return "not valid JSON";
    }
  } else {
    const m = /^(\S+)(?:\s+weight=(\d+))?$/.exec(v);
    if (!m) return "expected a URL optionally followed by weight=N";
    url = m[1];
    weight = m[2] === undefined ? undefined : Number(m[2]);
  }
  if (typeof url !== "string" || !/^https?:\/\/[^/]/.test(url)) return `url must be an http:// or https:// URL, got ${JSON.stringify(url)}`;
  if (weight !== undefined && !(Number.isInteger(weight) && (weight as number) > 0)) {
    return `weight must be a positive integer, got ${JSON.stringify(weight)}`;
  }
  return { url, labels: { etcd_key: key }, ...(weight !== undefined ? { weight: weight as number } : {}) };
}

export default {
  kind: "discovery",
  name: "etcd",
  create(options: Options, api) {
    const endpoints = options?.endpoints;
    if (!Array.isArray(endpoints) || endpoints.length === 0 || endpoints.some((e) => typeof e !== "string" || !/^https?:\/\//.test(e))) {
      throw new TypeError(`endpoints must be a list of etcd client URLs like http://127.0.0.1:2379, got ${JSON.stringify(endpoints)}`);
    }
    if (typeof options.prefix !== "string" || options.prefix === "") {
      throw new TypeError(`prefix must be a non-empty key prefix like /services/web/, got ${JSON.stringify(options.prefix)}`);
    }
    const timeout = options.timeout_ms ?? 3_000;
    const prefix = encoder.encode(options.prefix);
    const range = { key: b64(prefix), range_end: b64(prefixEnd(prefix)) };
    let endpoint = 0;

    /** POST to the current endpoint; on a connection failure try the next one. */
    async function post(path: string, body: unknown, stream = false): Promise<Response> {
      let last: unknown;
      for (let i = 0; i < endpoints.length; i++) {
        const base = endpoints[(endpoint + i) % endpoints.length]!.replace(/\/+$/, "");
        try {
          const signal = stream ? api.signal : AbortSignal.any([api.signal, AbortSignal.timeout(timeout)]);
          const res = await fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body), signal });
          if (!res.ok) throw new Error(`${path} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
          endpoint = (endpoint + i) % endpoints.length;
          return res;
        } catch (e) {
          if (api.signal.aborted) throw e;
          last = e;
        }
      }
      throw new Error(`etcd unreachable (${endpoints.join(", ")}): ${(last as Error)?.message ?? last}`);
    }

    const members = new Map<string, DiscoveredBackend>();
    const put = (kv: KeyValue) => {
      const key = text(kv.key);
      const parsed = parseValue(key, text(kv.value ?? ""));
      if (typeof parsed === "string") {
        api.log.warn("etcd key {key} skipped: {problem}", { key, problem: parsed });
        members.delete(key);
      } else members.set(key, parsed);
    };

    return (async function* () {
      const listed = await (await post("/v3/kv/range", range)).json() as { header: { revision: string }; kvs?: KeyValue[] };
      for (const kv of listed.kvs ?? []) put(kv);
      yield [...members.values()];
      const from = String(BigInt(listed.header.revision) + 1n);
      const watch = await post("/v3/watch", { create_request: { ...range, start_revision: from } }, true);
      const reader = watch.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the etcd watch ended (etcd stopped or restarted)");
        buffered += value;
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line) as {
            result?: { events?: { type?: string; kv: KeyValue }[]; canceled?: boolean; compact_revision?: string };
            error?: { message?: string };
          };
          if (msg.error) throw new Error(`etcd watch: ${msg.error.message}`);
          const r = msg.result;
          // Compacted past our revision, or cancelled: start over with a fresh read.
          if (r?.canceled) throw new Error(`etcd watch cancelled${r.compact_revision ? ` (compacted at ${r.compact_revision})` : ""}`);
          if (!r?.events?.length) continue;
          for (const ev of r.events) {
            if (ev.type === "DELETE") members.delete(text(ev.kv.key));
            else put(ev.kv);
          }
          yield [...members.values()];
        }
      }
    })();
  },
} satisfies DiscoveryPlugin<Options>;
