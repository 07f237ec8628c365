/**
 * HPACK's Huffman code (RFC 7541 §5.2, Appendix B), decoding only: responses are sent with plain
 * literals. The code is canonical (codes assigned in order of length, then symbol), so the 257
 * code lengths of Appendix B are enough to rebuild it. Decoding walks 4 bits at a time through a
 * table built once: every code is at least 5 bits long, so a nibble emits at most one symbol.
 */
import { Buffer } from "node:buffer";

/** Appendix B: the code length of each symbol 0..255 and EOS (256). */
// deno-fmt-ignore
const LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const EMIT = 1 << 16;
const FAIL = 1 << 17;

/** The code of each symbol (canonical order). */
function codes(): { code: number[]; len: number[] } {
  const order = Array.from({ length: 257 }, (_, s) => s).sort((a, b) => LENGTHS[a]! - LENGTHS[b]! || a - b);
  const code: number[] = new Array(257).fill(0);
  let c = 0;
  let prev = LENGTHS[order[0]!]!;
  order.forEach((s, i) => {
    if (i > 0) c = (c + 1) * 2 ** (LENGTHS[s]! - prev);
    prev = LENGTHS[s]!;
    code[s] = c;
  });
  return { code, len: LENGTHS };
}

/**
 * TABLE[node * 16 + nibble]: the next node (bits 0–7), the symbol emitted (bits 8–15, with EMIT),
 * or FAIL (EOS decoded). ACCEPT[node]: a string may end in this node (RFC 7541 §5.2: padding is a
 * prefix of EOS, all ones, shorter than 8 bits).
 */
const { TABLE, ACCEPT } = (() => {
  // The tree: internal nodes 0..255, children as node ids or -1 - symbol for a leaf.
  const unset = -1000;
  const kids: number[] = [unset, unset];
  const depth: number[] = [0];
  const ones: boolean[] = [true];
  let nodes = 1;
  const { code, len } = codes();
  for (let s = 0; s <= EOS; s++) {
    let n = 0;
    for (let b = len[s]! - 1; b >= 0; b--) {
      const bit = Math.floor(code[s]! / 2 ** b) & 1;
      if (b === 0) kids[n * 2 + bit] = -1 - s;
      else {
        if (kids[n * 2 + bit] === unset) {
          kids[n * 2 + bit] = nodes;
          kids.push(unset, unset);
          depth.push(depth[n]! + 1);
          ones.push(ones[n]! && bit === 1);
          nodes++;
        }
        n = kids[n * 2 + bit]!;
      }
    }
  }
  const table = new Uint32Array(nodes * 16);
  const accept = new Uint8Array(nodes);
  for (let n = 0; n < nodes; n++) {
    accept[n] = ones[n]! && depth[n]! <= 7 ? 1 : 0;
    for (let v = 0; v < 16; v++) {
      let at = n;
      let out = 0;
      for (let b = 3; b >= 0; b--) {
        const k = kids[at * 2 + ((v >> b) & 1)]!;
        if (k >= 0) at = k;
        else {
          const sym = -1 - k;
          if (sym === EOS) {
            out = FAIL;
            break;
          }
          out = EMIT | (sym << 8);
          at = 0;
        }
      }
      table[n * 16 + v] = out === FAIL ? FAIL : out | at;
    }
  }
  return { TABLE: table, ACCEPT: accept };
})();

/** Scratch for decoded bytes (a header string decodes to at most 8/5 of its length). */
let scratch = Buffer.allocUnsafe(4096);

/** Decode `src[start, end)`; the string (latin1), or undefined when the code is invalid (EOS, bad padding). */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string | undefined {
  const max = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < max) scratch = Buffer.allocUnsafe(Math.max(max, scratch.length * 2));
  const out = scratch;
  let o = 0;
  let node = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let e = TABLE[node * 16 + (byte >> 4)]!;
    if (e & FAIL) return undefined;
    if (e & EMIT) out[o++] = (e >> 8) & 0xff;
    node = e & 0xff;
    e = TABLE[node * 16 + (byte & 15)]!;
    if (e & FAIL) return undefined;
    if (e & EMIT) out[o++] = (e >> 8) & 0xff;
    node = e & 0xff;
  }
  if (ACCEPT[node] !== 1) return undefined;
  return out.toString("latin1", 0, o);
}

/** For tests: encode `s` (latin1) with the Huffman code. */
export function huffmanEncode(s: string): Uint8Array {
  const { code, len } = codes();
  const bits: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    for (let b = len[c]! - 1; b >= 0; b--) bits.push(Math.floor(code[c]! / 2 ** b) & 1);
  }
  while (bits.length % 8 !== 0) bits.push(1);
  const out = new Uint8Array(bits.length / 8);
  for (let i = 0; i < bits.length; i++) out[i >> 3]! |= bits[i]! << (7 - (i & 7));
  return out;
}
