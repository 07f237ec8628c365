import type { BackendView, RequestInfo, StrategyPlugin } from "../core/plugins/api.ts";

/**
 * Consistent hashing: a request's key (a header, a cookie, the client IP, the path or a query
 * parameter) always maps to the same backend while that backend is available, whichever worker
 * process or instance answers, and removing a backend moves only the keys it had.
 *
 *   strategy: { name: consistent-hash, options: { key: "header:x-user", algorithm: ring, bounded_load: 1.25 } }
 *
 * - `ring` (Karger et al., ketama-style): 160 points per unit of weight (fewer past 1,024 units
 *   in all, capping the ring at ~164k points); a key goes to the first point at or after its
 *   hash, which a 4,096-entry prefix index finds in ~1 step. Removing a backend moves exactly
 *   its keys.
 * - `maglev` (Eisenbud et al., NSDI 2016): a 65,537-entry table filled by each backend's own
 *   permutation, turns given in proportion to weight (as Envoy's weighted Maglev); O(1) lookup,
 *   better balance, a few more keys move on removal than the strict minimum.
 * - `bounded_load: c` ("Consistent Hashing with Bounded Loads", Mirrokni, Thorup, Zadimoghaddam,
 *   2016): a backend already at c × its weighted share of this process's in-flight requests is
 *   passed over for the next point on the ring (next table entry for maglev).
 * - `request.tried` (a retry): the walk goes on past the backends already tried, so a dead
 *   backend's keys spread over the ring's next points instead of landing on one neighbour.
 * - No key in the request: round robin over the points (so weights still hold).
 *
 * The hash is FNV-1a (32-bit) over UTF-16 code units with MurmurHash3's fmix32 finaliser: stable
 * (no per-process seed), allocation-free, and able to hash a slice of a header in place.
 */

interface Options {
  /** `client-ip`, `path`, `header:NAME`, `cookie:NAME` or `query:NAME`. @default "client-ip" */
  key?: string;
  /** `ring` or `maglev`. @default "ring" */
  algorithm?: "ring" | "maglev";
  /** A factor > 1 (e.g. 1.25): no backend takes more than that times its share of in-flight requests. @default off */
  bounded_load?: number;
}

const POINTS_PER_WEIGHT = 160;
/** Ring size cap: past 1,024 units of weight in all, points per unit shrink (each backend keeps a prefix of its points). */
const MAX_POINTS = 160 * 1024;
/** Prime, as Maglev needs; Envoy's default. Comfortable up to several hundred backends. */
const MAGLEV_SIZE = 65537;
/** The ring's lookup index: the first point of each of 4,096 hash prefixes, so a search spans ~1 point. */
const INDEX_SHIFT = 20;
const KEY = /^(client-ip|path|(header|cookie|query):[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/;

/** FNV-1a 32 of `s[start, end)` with a fmix32 finish; `seed` gives independent hashes. */
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

/**
 * Where in `s` the value of `name` is, in a list of `name=value` pairs separated by `sep` or
 * `sep2` (`;` and `,` for cookies, `&` for a query); -1 when absent. The end is left in `found.end`.
 */
function findPair(s: string, name: string, sep: number, sep2: number, found: { end: number }): number {
  const n = s.length;
  let i = 0;
  while (i < n) {
    let c = s.charCodeAt(i);
    while (i < n && (c === 32 || c === sep || c === sep2)) c = s.charCodeAt(++i);
    let end = i;
    while (end < n && (c = s.charCodeAt(end)) !== sep && c !== sep2) end++;
    if (end - i > name.length && s.charCodeAt(i + name.length) === 61 && s.startsWith(name, i)) {
      found.end = end;
      return i + name.length + 1;
    }
    i = end;
  }
  return -1;
}

/**
 * The key's hash for a request, or -1 when the request has no such key. Headers are read with
 * `request.header()` when the host offers it (no `Headers` object built), else `headers.get()`.
 */
function keyHasher(spec: string): (request: RequestInfo) => number {
  const found = { end: 0 };
  if (spec === "client-ip") return (r) => hash32(r.clientIp);
  if (spec === "path") return (r) => hash32(r.path);
  const colon = spec.indexOf(":");
  const kind = spec.slice(0, colon);
  const name = spec.slice(colon + 1);
  if (kind === "header") {
    const lower = name.toLowerCase();
    return (r) => {
      const v = r.header !== undefined ? r.header(lower) : r.headers.get(lower);
      return v === null ? -1 : hash32(v);
    };
  }
  if (kind === "cookie") {
    return (r) => {
      const c = r.header !== undefined ? r.header("cookie") : r.headers.get("cookie");
      if (c === null) return -1;
      // Several Cookie fields may arrive joined with ", " (a cookie value has no "," or ";").
      const start = findPair(c, name, 59, 44, found);
      return start < 0 ? -1 : hash32(c, 0, start, found.end);
    };
  }
  return (r) => {
    const q = r.query;
    if (!q) return -1;
    const start = findPair(q, name, 38, 38, found);
    return start < 0 ? -1 : hash32(q, 0, start, found.end);
  };
}

export default {
  kind: "strategy",
  name: "consistent-hash",
  create(options: Options) {
    const spec = options.key ?? "client-ip";
    if (typeof spec !== "string" || !KEY.test(spec)) {
      throw new TypeError(`key must be client-ip, path, header:NAME, cookie:NAME or query:NAME, got ${JSON.stringify(options.key)}`);
    }
    const algorithm = options.algorithm ?? "ring";
    if (algorithm !== "ring" && algorithm !== "maglev") {
      throw new TypeError(`algorithm must be ring or maglev, got ${JSON.stringify(options.algorithm)}`);
    }
    const factor = options.bounded_load ?? 0;
    if (typeof factor !== "number" || !(factor === 0 || factor > 1)) {
      throw new RangeError(`bounded_load must be a number above 1 (e.g. 1.25), got ${JSON.stringify(options.bounded_load)}`);
    }
    const keyOf = keyHasher(spec);

    let members: readonly BackendView[] | undefined;
    /** Ring: sorted point hashes. Maglev: unused. */
    let points = new Uint32Array(0);
    /** Ring: for each top-12-bit prefix p, the first point with a hash >= p << 20 (and one past the end). */
    let index = new Int32Array(0);
    /** Owner (index into members) of each ring point or maglev table entry. */
    let owners = new Int32Array(0);
    let totalWeight = 0;
    /** Cursor for requests without a key. */
    let cursor = 0;

    function update(backends: readonly BackendView[]) {
      members = backends;
      totalWeight = 0;
      for (const b of backends) totalWeight += b.weight;
      if (algorithm === "ring") buildRing(backends);
      else buildMaglev(backends);
    }

    function buildRing(backends: readonly BackendView[]) {
      const perWeight = Math.min(POINTS_PER_WEIGHT, MAX_POINTS / Math.max(1, totalWeight));
      let count = 0;
      for (const b of backends) count += b.weight > 0 ? Math.max(1, Math.round(b.weight * perWeight)) : 0;
      // hash × 2^20 + index sorts by hash with ties broken by index, in one typed-array sort.
      const all = new Float64Array(count);
      let k = 0;
      for (let i = 0; i < backends.length; i++) {
        const b = backends[i]!;
        const own = b.weight > 0 ? Math.max(1, Math.round(b.weight * perWeight)) : 0;
        for (let r = 0; r < own; r++) all[k++] = hash32(`${b.id}#${r}`) * 1048576 + i;
      }
      all.sort();
      points = new Uint32Array(k);
      owners = new Int32Array(k);
      for (let j = 0; j < k; j++) {
        const v = all[j]!;
        const i = v % 1048576;
        points[j] = (v - i) / 1048576;
        owners[j] = i;
      }
      const buckets = 2 ** (32 - INDEX_SHIFT);
      index = new Int32Array(buckets + 1);
      let j = 0;
      for (let p = 0; p <= buckets; p++) {
        while (j < k && points[j]! < p * 2 ** INDEX_SHIFT) j++;
        index[p] = j;
      }
    }

    function buildMaglev(backends: readonly BackendView[]) {
      const n = backends.length;
      owners = new Int32Array(MAGLEV_SIZE).fill(-1);
      if (n === 0) return;
      const offset = new Uint32Array(n);
      const skip = new Uint32Array(n);
      const next = new Uint32Array(n);
      const target = new Float64Array(n);
      let maxWeight = 0;
      for (let i = 0; i < n; i++) {
        offset[i] = hash32(backends[i]!.id, 0) % MAGLEV_SIZE;
        skip[i] = (hash32(backends[i]!.id, 0x9e3779b9) % (MAGLEV_SIZE - 1)) + 1;
        maxWeight = Math.max(maxWeight, backends[i]!.weight);
      }
      let filled = 0;
      for (let round = 1; filled < MAGLEV_SIZE; round++) {
        for (let i = 0; i < n && filled < MAGLEV_SIZE; i++) {
          // A backend takes a turn in proportion to its weight (Envoy's weighted Maglev).
          if (round * backends[i]!.weight < target[i]! + maxWeight) continue;
          target[i]! += maxWeight;
          let slot = (offset[i]! + next[i]! * skip[i]!) % MAGLEV_SIZE;
          while (owners[slot]! >= 0) {
            next[i]!++;
            slot = (offset[i]! + next[i]! * skip[i]!) % MAGLEV_SIZE;
          }
          owners[slot] = i;
          next[i]!++;
          filled++;
        }
      }
    }

    return {
      update,
      pick(backends: readonly BackendView[], request: RequestInfo) {
        if (backends !== members) update(backends);
        const size = owners.length;
        if (size === 0) return undefined;
        const h = keyOf(request);
        let at: number;
        if (h < 0) {
          if (cursor >= size) cursor = 0;
          at = cursor++;
        } else if (algorithm === "maglev") at = h % MAGLEV_SIZE;
        else {
          // First point at or after h, wrapping to the start; the index narrows it to h's prefix.
          const p = h >>> INDEX_SHIFT;
          let lo = index[p]!;
          let hi = index[p + 1]!;
          while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if (points[mid]! < h) lo = mid + 1;
            else hi = mid;
          }
          at = lo === size ? 0 : lo;
        }
        const tried = request.tried;
        const checkTried = tried !== undefined && tried.length > 0;
        // Bounded load: a backend may take this request while its in-flight count stays within
        // ceil(c × (all in flight + 1) × its weight / total weight). Some backend always can.
        let scale = 0;
        if (factor !== 0) {
          let total = 1;
          for (let i = 0; i < backends.length; i++) total += backends[i]!.inflight;
          scale = (factor * total) / totalWeight;
        }
        let firstUntried: BackendView | undefined;
        const own = at;
        // Walk on to the next point past backends already tried and, with bounded_load, full ones.
        // Points fall in random order, so 64 per backend meet every backend but with odds of
        // about n × e^-64; the bound keeps a pick short when every backend has been tried.
        const limit = Math.min(size, 64 * backends.length + 64);
        for (let step = 0; step < limit; step++) {
          const b = backends[owners[at]!]!;
          if (++at === size) at = 0;
          if (checkTried && tried.includes(b)) continue;
          if (factor === 0 || b.inflight + 1 <= Math.ceil(scale * b.weight)) return b;
          firstUntried ??= b;
        }
        // All tried (take the key's own backend), or every untried one full (the first of them).
        return firstUntried ?? backends[owners[own]!];
      },
    };
  },
} satisfies StrategyPlugin<Options>;
