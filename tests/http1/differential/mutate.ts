/**
 * The fuzzer's mutations: a seeded PRNG and byte- and line-level changes to corpus cases, the
 * kind that turn one parser's message boundary into another's (a CR or LF where CRLF belongs, a
 * tab or NUL inside a value, a header line twice or missing, another chunk size, two requests made
 * one or one split, a name in another case).
 */
import { Buffer } from "node:buffer";

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, a: readonly T[]): T => a[int(r, a.length)]!;

/** Bytes worth inserting: line ends, whitespace, NUL, separators, and what follows them in framing. */
const INSERTS = ["\r", "\n", "\r\n", "\t", " ", "\x00", ",", ";", '"', "0", ":", "\x0b", "\xa0", "\\", "=", "\x7f", "\xff"];
const FIELDS = [
  "Content-Length: 5",
  "Content-Length: 0",
  "Transfer-Encoding: chunked",
  "Transfer-Encoding: identity",
  "Host: y",
  "Connection: close",
  "Connection: keep-alive",
  "Expect: 100-continue",
  "Upgrade: h2c\r\nConnection: upgrade",
  "Cookie: z=1",
  "Trailer: x",
];
const TOKENS = ["chunked", "identity", "gzip", "Content-Length", "Transfer-Encoding", "HTTP/1.0", "HTTP/1.1", "close", "0", "5", "ffff"];

/** The offsets where each CRLF-ended line starts, up to `limit` bytes. */
function lineStarts(b: Buffer): number[] {
  const out = [0];
  for (let i = b.indexOf("\r\n"); i >= 0; i = b.indexOf("\r\n", i + 2)) out.push(i + 2);
  return out.filter((s) => s < b.length);
}

function lineAt(b: Buffer, starts: number[], k: number): [number, number] {
  const start = starts[k]!;
  const eol = b.indexOf("\r\n", start);
  return [start, eol < 0 ? b.length : eol + 2];
}

const splice = (b: Buffer, at: number, remove: number, insert: Buffer | string) =>
  Buffer.concat([b.subarray(0, at), typeof insert === "string" ? Buffer.from(insert, "latin1") : insert, b.subarray(at + remove)]);

export interface Mutation {
  name: string;
  apply(b: Buffer, r: Rand, corpus: readonly Buffer[]): Buffer;
}

export const MUTATIONS: readonly Mutation[] = [
  { name: "flip a byte", apply: (b, r) => (b.length ? splice(b, int(r, b.length), 1, String.fromCharCode(int(r, 256))) : b) },
  { name: "insert a byte", apply: (b, r) => splice(b, int(r, b.length + 1), 0, pick(r, INSERTS)) },
  { name: "delete bytes", apply: (b, r) => (b.length ? splice(b, int(r, b.length), 1 + int(r, 3), "") : b) },
  {
    name: "CRLF to CR or LF",
    apply: (b, r) => {
      const starts = lineStarts(b).slice(1);
      if (!starts.length) return b;
      return splice(b, pick(r, starts) - 2, 2, pick(r, ["\r", "\n", "\n\r", "\r\r\n"]));
    },
  },
  {
    name: "duplicate a line",
    apply: (b, r) => {
      const starts = lineStarts(b);
      const [s, e] = lineAt(b, starts, int(r, starts.length));
      return splice(b, e, 0, b.subarray(s, e));
    },
  },
  {
    name: "delete a line",
    apply: (b, r) => {
      const starts = lineStarts(b);
      const [s, e] = lineAt(b, starts, int(r, starts.length));
      return splice(b, s, e - s, "");
    },
  },
  {
    name: "swap two lines",
    apply: (b, r) => {
      const starts = lineStarts(b);
      if (starts.length < 2) return b;
      const k = int(r, starts.length - 1);
      const [s1, e1] = lineAt(b, starts, k), [s2, e2] = lineAt(b, starts, k + 1);
      return Buffer.concat([b.subarray(0, s1), b.subarray(s2, e2), b.subarray(s1, e1), b.subarray(e2)]);
    },
  },
  {
    name: "insert a field line",
    apply: (b, r) => {
      const starts = lineStarts(b).slice(1);
      return splice(b, starts.length ? pick(r, starts) : 0, 0, `${pick(r, FIELDS)}\r\n`);
    },
  },
  {
    name: "whitespace around a colon or at a line start",
    apply: (b, r) => {
      const colons: number[] = [];
      for (let i = b.indexOf(":"); i >= 0; i = b.indexOf(":", i + 1)) colons.push(i);
      const starts = lineStarts(b).slice(1);
      const ws = pick(r, [" ", "\t", " \t"]);
      if (r() < 0.5 && colons.length) {
        const c = pick(r, colons);
        return splice(b, r() < 0.5 ? c : c + 1, 0, ws);
      }
      return starts.length ? splice(b, pick(r, starts), 0, ws) : b;
    },
  },
  {
    name: "change a chunk size",
    apply: (b, r) => {
      const sizes: [number, number][] = [];
      for (const s of lineStarts(b)) {
        let e = s;
        while (e < b.length && /[0-9a-fA-F]/.test(String.fromCharCode(b[e]!))) e++;
        if (e > s && (b[e] === 13 || b[e] === 59) && e - s <= 8) sizes.push([s, e]);
      }
      if (!sizes.length) return b;
      const [s, e] = pick(r, sizes);
      const n = parseInt(b.toString("latin1", s, e), 16);
      const next = pick(r, [n + 1, Math.max(0, n - 1), 0, n * 16, int(r, 0x40)]);
      const text = pick(r, ["", "0", "00000000000000000"]) + next.toString(16);
      return splice(b, s, e - s, r() < 0.3 ? text.toUpperCase() : text);
    },
  },
  {
    name: "change a number",
    apply: (b, r) => {
      const nums: [number, number][] = [];
      for (const m of b.toString("latin1").matchAll(/\d+/g)) nums.push([m.index!, m.index! + m[0].length]);
      if (!nums.length) return b;
      const [s, e] = pick(r, nums);
      const n = Number(b.toString("latin1", s, e));
      return splice(b, s, e - s, String(pick(r, [n + 1, Math.max(0, n - 1), 0, n + 40, n * 2])));
    },
  },
  {
    name: "replace a token",
    apply: (b, r) => {
      const words: [number, number][] = [];
      for (const m of b.toString("latin1").matchAll(/[A-Za-z][A-Za-z0-9-]*(\/1\.[01])?/g)) words.push([m.index!, m.index! + m[0].length]);
      if (!words.length) return b;
      const [s, e] = pick(r, words);
      return splice(b, s, e - s, pick(r, TOKENS));
    },
  },
  {
    name: "change the case of a letter or a line",
    apply: (b, r) => {
      const starts = lineStarts(b);
      const [s, e] = lineAt(b, starts, int(r, starts.length));
      const line = b.toString("latin1", s, e);
      if (r() < 0.5) return splice(b, s, e - s, r() < 0.5 ? line.toUpperCase() : line.toLowerCase());
      const i = s + int(r, e - s);
      const c = String.fromCharCode(b[i] ?? 32);
      return splice(b, i, 1, c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase());
    },
  },
  {
    name: "append another case (pipelining)",
    apply: (b, r, corpus) => Buffer.concat([b, pick(r, corpus)]),
  },
  {
    name: "cut the end off",
    apply: (b, r) => b.subarray(0, int(r, b.length + 1)),
  },
  {
    name: "merge two cases at a line",
    apply: (b, r, corpus) => {
      const other = pick(r, corpus);
      const a = lineStarts(b), o = lineStarts(other);
      return Buffer.concat([b.subarray(0, pick(r, a)), other.subarray(pick(r, o))]);
    },
  },
];

/** Case `i` of a run with `seed`: a corpus case with one to three mutations, and their names. */
export function fuzzCase(seed: number, i: number, corpus: readonly Buffer[]): { bytes: Buffer; from: number; steps: string[] } {
  const r = prng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
  const from = int(r, corpus.length);
  let bytes = corpus[from]!;
  const steps: string[] = [];
  for (let n = 1 + int(r, 3); n > 0; n--) {
    const m = pick(r, MUTATIONS);
    bytes = m.apply(bytes, r, corpus);
    steps.push(m.name);
  }
  // Keep a case to one read: the oracle and Fulcrum then see the same arrival.
  return { bytes: bytes.length > 8192 ? bytes.subarray(0, 8192) : bytes, from, steps };
}
