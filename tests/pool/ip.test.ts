/**
 * core/lib/ip.ts's isIP (used instead of node:net's, which is slow to load) answers as node:net's
 * does: valid and invalid IPv4 and IPv6 forms, zones, and random strings of address characters.
 */
import { expect, test } from "bun:test";
import { isIP as nodeIsIP } from "node:net";
import { isIP } from "../../core/lib/ip.ts";

const CASES = [
  ...["127.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5", "127.1", "0x7f.0.0.1"],
  ...[" 1.2.3.4", "1.2.3.4\n", "1.2.3.4%eth0", "", "localhost", "example.com", "[::1]", "g::1", "12345::"],
  ...["::", "::1", "::ffff:1.2.3.4", "::1.2.3.4", "1::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9"],
  ...["1::2::3", "2001:db8::", "2001:0db8:0000:0000:0000:0000:0000:0001", "FE80::A", "1:2:3:4:5:6:7::", ":1:2:3:4:5:6:7"],
  ...["fe80::1%eth0", "fe80::1%", "::1%a.b-c:d", "::%", "fe80::1%eth0/64"],
];

test("isIP agrees with node:net on address forms", () => {
  for (const s of CASES) expect([s, isIP(s)]).toEqual([s, nodeIsIP(s) as 0 | 4 | 6]);
});

test("isIP agrees with node:net on generated addresses and near-misses", () => {
  // mulberry32: the same corpus every run.
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
  const octet = () => String(rand(4) ? rand(256) : rand(400)).padStart(rand(6) ? 0 : 2, "0");
  const v4 = () => Array.from({ length: rand(8) ? 4 : 3 + rand(3) }, octet).join(".");
  const group = () => rand(0x10000).toString(16).padStart(rand(3) ? 0 : 4, "0").slice(0, rand(8) ? 4 : 5);
  const v6 = () => {
    const groups = Array.from({ length: 1 + rand(8) }, group);
    if (rand(3)) groups.splice(rand(groups.length + 1), 0, "");
    let s = groups.join(":");
    if (s.startsWith(":") && !s.startsWith("::")) s = ":" + s;
    if (s.endsWith(":") && !s.endsWith("::")) s += ":";
    if (!rand(4)) s += (s.endsWith(":") ? "" : ":") + v4();
    if (!rand(5)) s += "%" + ["eth0", "1", "", "a.b"][rand(4)];
    return rand(2) ? s : s.toUpperCase();
  };
  const chars = "0123456789abcdefg:.%";
  const mutate = (s: string) => {
    const at = rand(s.length + 1);
    return rand(2) ? s.slice(0, at) + chars[rand(chars.length)] + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
  };
  const seen = { 0: 0, 4: 0, 6: 0 };
  for (let i = 0; i < 20_000; i++) {
    let s = rand(2) ? v4() : v6();
    if (!rand(3)) s = mutate(s);
    const want = nodeIsIP(s) as 0 | 4 | 6;
    seen[want]++;
    if (isIP(s) !== want) expect([s, isIP(s)]).toEqual([s, want]);
  }
  // The corpus has plenty of each answer.
  for (const n of Object.values(seen)) expect(n).toBeGreaterThan(1_000);
});
