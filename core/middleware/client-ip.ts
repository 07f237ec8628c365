/**
 * The client's address for rate limiting: the TCP peer, unless the peer is a trusted proxy, in
 * which case `X-Forwarded-For` is read from the right, skipping trusted proxies, and the first
 * untrusted address is the client (the entries left of it could be forged by the client).
 */

/** An address as 16 bytes (IPv4 as `::ffff:a.b.c.d`) and a prefix length in bits. */
interface Cidr {
  readonly bytes: Uint8Array;
  readonly bits: number;
}

/** Parse an IPv4 or IPv6 address; undefined when it is neither. */
export function parseIp(text: string): Uint8Array | undefined {
  let s = text.trim();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  const out = new Uint8Array(16);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    out[10] = out[11] = 0xff;
    for (let i = 0; i < 4; i++) {
      const n = Number(v4[i + 1]);
      if (n > 255) return undefined;
      out[12 + i] = n;
    }
    return out;
  }
  if (!s.includes(":")) return undefined;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const tail = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (tail) {
    const b = tail.slice(1).map(Number);
    if (b.some((n) => n > 255)) return undefined;
    s = `${s.slice(0, tail.index)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const left = halves[0] ? halves[0].split(":") : [];
  const right = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...right];
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  }
  return out;
}

/** Parse `10.0.0.0/8`, `::1`, `fd00::/8`; throws a RangeError naming the entry. */
export function parseCidr(text: string): Cidr {
  const [addr, len, extra] = String(text).split("/");
  const bytes = addr === undefined ? undefined : parseIp(addr);
  const v4 = addr !== undefined && !addr.includes(":");
  const max = v4 ? 32 : 128;
  const bits = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!bytes || extra !== undefined || !(bits >= 0 && bits <= max)) {
    throw new RangeError(
      `trusted_proxies: each entry must be an IP address or CIDR such as 10.0.0.0/8 or fd00::/8, got ${JSON.stringify(text)}`,
    );
  }
  return { bytes, bits: v4 ? bits + 96 : bits };
}

function contains(c: Cidr, ip: Uint8Array): boolean {
  let bits = c.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((c.bytes[i]! & mask) !== (ip[i]! & mask)) return false;
  }
  return true;
}

/**
 * A function from (peer address, X-Forwarded-For value) to the client's address. With no
 * trusted proxies it returns the peer without looking at the header.
 */
export function clientAddress(trusted: readonly string[]): (peer: string, forwardedFor: string | null) => string {
  if (trusted.length === 0) return (peer) => peer;
  const cidrs = trusted.map(parseCidr);
  const isTrusted = (text: string) => {
    const ip = parseIp(text);
    return ip !== undefined && cidrs.some((c) => contains(c, ip));
  };
  return (peer, forwardedFor) => {
    if (!forwardedFor || !isTrusted(peer)) return peer;
    const hops = forwardedFor.split(",");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!.trim();
      if (!isTrusted(hop)) return hop || peer;
    }
    // Every hop is a trusted proxy: the leftmost is the closest we know to the client.
    return hops[0]!.trim() || peer;
  };
}
