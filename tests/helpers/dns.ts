/**
 * A small authoritative DNS server on a loopback UDP port, for the discovery tests: A, AAAA and
 * SRV records that a test sets and removes while it runs, each with its TTL, and names that answer
 * SERVFAIL on demand. Written on node:dgram from RFC 1035 §4 (header, question, answer records),
 * so every answer is a real DNS message that the runtime's resolver parses.
 */
import { createSocket, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";

export interface ARecord {
  address: string;
  ttl?: number;
}
export interface SrvRecord {
  priority?: number;
  weight: number;
  port: number;
  target: string;
  ttl?: number;
}
type RecordType = "A" | "AAAA" | "SRV";
const TYPES: Record<number, RecordType> = { 1: "A", 28: "AAAA", 33: "SRV" };
const CODES: Record<RecordType, number> = { A: 1, AAAA: 28, SRV: 33 };

export interface DnsServer {
  /** `127.0.0.1:PORT`, for `discovery.dns.resolver`. */
  readonly address: string;
  readonly port: number;
  /** Replace the records of `name` and `type` (an empty list: the name answers with no records). */
  set(name: string, type: "A" | "AAAA", records: ARecord[]): void;
  set(name: string, type: "SRV", records: SrvRecord[]): void;
  /** While on, queries for `name` are answered SERVFAIL. */
  fail(name: string, on: boolean): void;
  /** Queries answered so far, by `name/type`. */
  readonly queries: Map<string, number>;
  stop(): Promise<void>;
}

export async function startDnsServer(): Promise<DnsServer> {
  const records = new Map<string, (ARecord | SrvRecord)[]>();
  const failing = new Set<string>();
  const queries = new Map<string, number>();
  const socket: Socket = createSocket("udp4");
  socket.on("message", (msg, peer) => {
    const answer = respond(msg, records, failing, queries);
    if (answer) socket.send(answer, peer.port, peer.address);
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  const port = socket.address().port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    queries,
    set(name: string, type: RecordType, list: (ARecord | SrvRecord)[]) {
      records.set(`${name.toLowerCase()}/${type}`, list);
    },
    fail(name, on) {
      if (on) failing.add(name.toLowerCase());
      else failing.delete(name.toLowerCase());
    },
    stop: () => new Promise<void>((r) => socket.close(() => r())),
  } as DnsServer;
}

function respond(
  msg: Buffer,
  records: Map<string, (ARecord | SrvRecord)[]>,
  failing: Set<string>,
  queries: Map<string, number>,
): Buffer | undefined {
  if (msg.length < 12) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  let off = 12;
  const labels: string[] = [];
  while (off < msg.length && msg[off] !== 0) {
    const len = msg[off]!;
    labels.push(msg.subarray(off + 1, off + 1 + len).toString("ascii"));
    off += len + 1;
  }
  off++;
  const qtype = msg.readUInt16BE(off);
  const question = msg.subarray(12, off + 4);
  const name = labels.join(".").toLowerCase();
  const type = TYPES[qtype];
  queries.set(`${name}/${type ?? qtype}`, (queries.get(`${name}/${type ?? qtype}`) ?? 0) + 1);
  const list = type ? records.get(`${name}/${type}`) : undefined;
  // rcode 2 SERVFAIL on demand; 3 NXDOMAIN for a name the test never set.
  const known = [...records.keys()].some((k) => k.startsWith(`${name}/`));
  const rcode = failing.has(name) ? 2 : known ? 0 : 3;
  const answers = rcode === 0 && list ? list.map((r) => answer(type!, r)) : [];
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  // QR, AA, RA; the client's opcode and RD kept.
  head.writeUInt16BE(0x8400 | (flags & 0x7900) | 0x0080 | rcode, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(answers.length, 6);
  return Buffer.concat([head, question, ...answers]);
}

function answer(type: RecordType, r: ARecord | SrvRecord): Buffer {
  let rdata: Buffer;
  if (type === "A") rdata = Buffer.from((r as ARecord).address.split(".").map(Number));
  else if (type === "AAAA") rdata = ipv6Bytes((r as ARecord).address);
  else {
    const s = r as SrvRecord;
    const fixed = Buffer.alloc(6);
    fixed.writeUInt16BE(s.priority ?? 10, 0);
    fixed.writeUInt16BE(s.weight, 2);
    fixed.writeUInt16BE(s.port, 4);
    rdata = Buffer.concat([fixed, encodeName(s.target)]);
  }
  const rr = Buffer.alloc(12);
  rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
  rr.writeUInt16BE(CODES[type], 2);
  rr.writeUInt16BE(1, 4); // IN
  rr.writeUInt32BE(r.ttl ?? 30, 6);
  rr.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([rr, rdata]);
}

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, "").split(".").filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, "ascii")])), Buffer.from([0])]);
}

function ipv6Bytes(address: string): Buffer {
  if (!isIPv6(address)) throw new TypeError(`not an IPv6 address: ${address}`);
  const [head, tail] = address.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** A backend on a chosen loopback address and port (DNS A records name addresses, not ports). */
export interface AddressedBackend {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Proxied requests received (health probes not counted). */
  served: number;
  /** Health probes received, and whether each passed. */
  readonly probes: boolean[];
  /** What `/health` answers: 200 while true, 503 while false. */
  healthy: boolean;
  /** Requests being answered now. */
  inflight: number;
  /** While set, a request to `/slow` waits for it. */
  gate: Promise<void> | undefined;
  stop(): Promise<void>;
}

/** Serve on `hostname:port` (port 0: any); each proxied request takes `delayMs`. */
export function startAddressedBackend(name: string, hostname: string, port = 0, delayMs = 2): AddressedBackend {
  const b: AddressedBackend = {
    name,
    url: "",
    port: 0,
    served: 0,
    probes: [],
    healthy: true,
    inflight: 0,
    gate: undefined,
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    hostname,
    port,
    idleTimeout: 0,
    async fetch(req) {
      if (new URL(req.url).pathname === "/health") {
        b.probes.push(b.healthy);
        return new Response(b.healthy ? "ok" : "not yet", { status: b.healthy ? 200 : 503 });
      }
      b.served++;
      b.inflight++;
      try {
        if (delayMs) await Bun.sleep(delayMs);
        if (b.gate && new URL(req.url).pathname === "/slow") await b.gate;
        return new Response(`hello from ${name}\n`, { headers: { "x-backend": name } });
      } finally {
        b.inflight--;
      }
    },
  });
  Object.assign(b, { url: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${server.port}`, port: server.port });
  return b;
}

/** Poll `check` until it holds (bounded), for conditions with no event to wait on. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/**
 * Requests to `url` at `concurrency` until `stop()` is called and at least `min` were sent
 * (bounded by `max`). Resolves with what each request got: the backend's name or the failure.
 */
export function steadyLoad(url: string, o: { concurrency: number; min: number; max?: number }) {
  let stopping = false;
  let sent = 0;
  const results: { backend: string; status: number }[] = [];
  const failures: string[] = [];
  const max = o.max ?? o.min * 20;
  const worker = async () => {
    while ((!stopping || sent < o.min) && sent < max) {
      sent++;
      try {
        const r = await fetch(url);
        const text = await r.text();
        results.push({ backend: r.headers.get("x-backend") ?? "", status: r.status });
        if (r.status !== 200) failures.push(`status ${r.status}: ${text.trim()}`);
      } catch (e) {
        failures.push(String(e));
      }
    }
  };
  const done = Promise.all(Array.from({ length: o.concurrency }, worker));
  return {
    results,
    failures,
    get sent() {
      return sent;
    },
    /** Stop once `min` requests were sent; resolves when the last has finished. */
    async stop() {
      stopping = true;
      await done;
      return { results, failures };
    },
  };
}
