/**
 * The built-in `dns` discovery source (`discovery: { dns: { name, type, port, interval,
 * resolver } }`), written against the public discovery plugin interface: it re-resolves the name
 * in the background and yields the backends each answer names. A: IPv4 addresses, AAAA: IPv6,
 * both on `port`; SRV: the targets of the lowest priority, with their ports and weights, each
 * target resolved through the same server. An answer with no records yields an empty list and a
 * failed lookup throws: the pool keeps its last good list either way (core/discovery/runner.ts).
 */
import type { promises as dnsPromises } from "node:dns";
import { isIP } from "../lib/ip.ts";
import type { DiscoveredBackend, DiscoveryPlugin } from "../plugins/api.ts";

export interface DnsOptions {
  name: string;
  type: "A" | "AAAA" | "SRV";
  port?: number | undefined;
  /** Milliseconds between lookups; default: the answer's TTL, from 1s to 5m. */
  interval?: number | undefined;
  /** `ip` or `ip:port` / `[ipv6]:port` of the DNS server; default: the system's. */
  resolver?: string | undefined;
  scheme: "http" | "https";
}

const MIN_TTL_MS = 1_000;
const MAX_TTL_MS = 300_000;
/** The runtime's resolver gives SRV answers without their TTL. */
const SRV_DEFAULT_MS = 30_000;
/** Re-asked this soon after an answer with no records, when no interval is set. */
const EMPTY_RETRY_MS = 5_000;
const LOOKUP_TIMEOUT_MS = 2_000;
// Loaded for the first pool that uses it: this source is registered at every start.
const dnsModule = () => (process.getBuiltinModule("node:dns") as typeof import("node:dns")).promises;

/** One lookup's backends and how long they may be kept. */
interface Answer {
  backends: DiscoveredBackend[];
  ttlMs: number;
}

/** Lookups through a fresh resolver each time: one kept across lookups answers from its cache until the TTL runs out. */
function resolver(server: string | undefined): dnsPromises.Resolver {
  const r = new (dnsModule().Resolver)({ timeout: LOOKUP_TIMEOUT_MS, tries: 2 });
  if (server !== undefined) r.setServers([server]);
  return r;
}

const NO_RECORDS = new Set(["ENOTFOUND", "ENODATA", "NOTFOUND", "NODATA"]);
const noRecords = (e: unknown) => NO_RECORDS.has(String((e as { code?: unknown })?.code));

function urlOf(scheme: string, address: string, port: number): string {
  return `${scheme}://${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

async function lookup(o: DnsOptions): Promise<Answer> {
  const r = resolver(o.resolver);
  try {
    if (o.type !== "SRV") {
      const records = o.type === "A" ? await r.resolve4(o.name, { ttl: true }) : await r.resolve6(o.name, { ttl: true });
      const ttl = Math.min(...records.map((x) => x.ttl)) * 1000;
      const backends = records.map((x) => ({ url: urlOf(o.scheme, x.address, o.port!), labels: { dns_name: o.name } }));
      return { backends, ttlMs: records.length ? ttl : EMPTY_RETRY_MS };
    }
    const srv = await r.resolveSrv(o.name);
    if (srv.length === 0) return { backends: [], ttlMs: EMPTY_RETRY_MS };
    // RFC 2782: the lowest priority is used while any target of it is there.
    const lowest = Math.min(...srv.map((x) => x.priority));
    const backends: DiscoveredBackend[] = [];
    for (const x of srv.filter((s) => s.priority === lowest)) {
      const target = x.name.replace(/\.$/, "");
      const addresses = isIP(target) ? [target] : await addressesOf(r, target);
      // SRV weight 0 means "rarely": the smallest weight a backend can have.
      for (const a of addresses)
        backends.push({ url: urlOf(o.scheme, a, x.port), weight: Math.max(1, x.weight), labels: { dns_name: target } });
    }
    return { backends, ttlMs: SRV_DEFAULT_MS };
  } catch (e) {
    if (noRecords(e)) return { backends: [], ttlMs: EMPTY_RETRY_MS };
    const code = (e as { code?: string })?.code;
    throw new Error(`${o.type} lookup of ${o.name}${o.resolver ? ` at ${o.resolver}` : ""} failed: ${code ?? (e as Error)?.message}`, {
      cause: e,
    });
  }
}

/** An SRV target's addresses (A, else AAAA) through the same server. */
async function addressesOf(r: dnsPromises.Resolver, target: string): Promise<string[]> {
  try {
    return await r.resolve4(target);
  } catch (e) {
    if (!noRecords(e)) throw e;
    try {
      return await r.resolve6(target);
    } catch (e6) {
      if (noRecords(e6)) return [];
      throw e6;
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

const dns: DiscoveryPlugin<DnsOptions> = {
  kind: "discovery",
  name: "dns",
  create(options, api) {
    if (typeof options?.name !== "string" || options.name === "") throw new TypeError(`dns: name must be a DNS name, got ${options?.name}`);
    if (options.type !== "SRV" && !(Number(options.port) > 0)) throw new RangeError(`dns: port is needed with type ${options.type}`);
    const o: DnsOptions = { ...options, type: options.type ?? "A", scheme: options.scheme ?? "http" };
    return (async function* () {
      while (!api.signal.aborted) {
        const answer = await lookup(o);
        if (api.signal.aborted) return;
        yield answer.backends;
        const ttl = Math.min(MAX_TTL_MS, Math.max(MIN_TTL_MS, answer.ttlMs));
        await sleep(o.interval ?? ttl, api.signal);
      }
    })();
  },
};
export default dns;
