/**
 * FNV-1a (32-bit) over a string's UTF-16 code units, finished with MurmurHash3's fmix32 so that
 * near-identical inputs ("web-1", "web-2") spread over the whole range. Stable across processes,
 * machines and runtimes (no seed from the process), allocation-free, and able to hash a slice of
 * a string without cutting it out. strategies/consistent-hash.ts carries its own copy of the same
 * function (built-in strategies import only the plugin API).
 */
export function hash32(s: string, seed = 0, start = 0, end = s.length): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = start; i < end; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 64 bits as 16 hex digits: two {@link hash32} with different seeds. */
export function hash64Hex(s: string): string {
  return hash32(s, 0).toString(16).padStart(8, "0") + hash32(s, 0x9e3779b9).toString(16).padStart(8, "0");
}
