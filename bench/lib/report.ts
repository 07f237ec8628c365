// Aggregation, the console table, and the JSON + SVG written under bench/results/.
import type { LoadResult } from "./loadgen.ts";

export interface RunRecord extends LoadResult {
  scenario: string;
  proxy: string;
  round: number;
  upstreamConns: number;
}

export interface Cell {
  scenario: string;
  proxy: string;
  runs: number;
  rps: number;
  bytesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  upstreamConnsPerReq: number;
  upstreamConnsMaxRun: number;
  connections: number;
  ratio?: number; // to nginx: req/s, or bytes/s where the scenario says so
  p99Ratio?: number; // p99 / nginx's p99 (target: <= 1.5)
}

export interface ProxySummary {
  proxy: string;
  startupMs: number;
  rssIdleMB: number;
  /** Idle: private pages of every process plus the shared ones once (the executable is not counted per process). */
  ownIdleMB?: number;
  rssAfterLoadMB?: number;
  rssIdleConnsMB?: number;
  idleConns?: { requested: number; open: number; held: number };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export function aggregate(
  runs: RunRecord[],
  scenarios: { id: string; connections: number; byBytes?: boolean }[],
  proxies: string[],
): Cell[] {
  const cells: Cell[] = [];
  for (const sc of scenarios) {
    for (const p of proxies) {
      const rs = runs.filter((r) => r.scenario === sc.id && r.proxy === p);
      if (!rs.length) continue;
      const reqs = rs.reduce((a, r) => a + r.requests, 0);
      cells.push({
        scenario: sc.id,
        proxy: p,
        runs: rs.length,
        connections: sc.connections,
        rps: median(rs.map((r) => r.rps)),
        bytesPerSec: median(rs.map((r) => r.bytesPerSec)),
        p50Ms: median(rs.map((r) => r.p50Ms)),
        p99Ms: median(rs.map((r) => r.p99Ms)),
        errors: rs.reduce((a, r) => a + r.errors, 0),
        upstreamConnsPerReq: rs.reduce((a, r) => a + r.upstreamConns, 0) / Math.max(1, reqs),
        upstreamConnsMaxRun: Math.max(...rs.map((r) => r.upstreamConns)),
      });
    }
    const ref = cells.find((c) => c.scenario === sc.id && c.proxy === "nginx");
    if (ref) {
      for (const c of cells.filter((c) => c.scenario === sc.id)) {
        c.ratio = sc.byBytes ? c.bytesPerSec / ref.bytesPerSec : c.rps / ref.rps;
        c.p99Ratio = c.p99Ms / ref.p99Ms;
      }
    }
  }
  return cells;
}

const fmtN = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0));
const fmtB = (
  n: number,
) => (Number.isNaN(n) ? "-" : n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(2)} GiB/s` : `${(n / 1024 ** 2).toFixed(1)} MiB/s`);
const fmtMs = (n: number) => (Number.isNaN(n) ? "-" : n < 10 ? n.toFixed(2) : n.toFixed(1));

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

export function formatCells(cells: Cell[]): string {
  return table(
    ["scenario", "proxy", "req/s", "bytes/s", "p50 ms", "p99 ms", "errors", "x nginx", "p99 x nginx", "upstream conns", "conns/req"],
    cells.map((
      c,
    ) => [
      c.scenario,
      c.proxy,
      fmtN(c.rps),
      fmtB(c.bytesPerSec),
      fmtMs(c.p50Ms),
      fmtMs(c.p99Ms),
      String(c.errors),
      c.ratio === undefined ? "-" : c.ratio.toFixed(2),
      c.p99Ratio === undefined ? "-" : c.p99Ratio.toFixed(2),
      `${c.upstreamConnsMaxRun} (${(c.upstreamConnsMaxRun / c.connections).toFixed(1)}x c)`,
      c.upstreamConnsPerReq.toFixed(4),
    ]),
  );
}

export function formatSummaries(s: ProxySummary[]): string {
  const mb = (n?: number) => (n === undefined ? "-" : n.toFixed(1));
  return table(
    ["proxy", "", "start-up ms", "idle RSS MB", "idle own MB", "RSS after load MB", "RSS w/ idle conns MB", "added MB", "conns held"],
    s.map((
      p,
    ) => [
      p.proxy,
      "",
      p.startupMs.toFixed(0),
      mb(p.rssIdleMB),
      mb(p.ownIdleMB),
      mb(p.rssAfterLoadMB),
      mb(p.rssIdleConnsMB),
      p.rssIdleConnsMB === undefined ? "-" : mb(p.rssIdleConnsMB - (p.rssAfterLoadMB ?? p.rssIdleMB)),
      p.idleConns ? `${p.idleConns.held}/${p.idleConns.requested}` : "-",
    ]),
  );
}

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#65a30d", "#7c3aed"];
// Peers keep one colour each (greys), so Fulcrum's variants never share theirs.
const PEER_COLORS: Record<string, string> = { nginx: "#374151", haproxy: "#9ca3af" };
const esc = (s: string) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** Grouped bars per scenario, heights relative to the fastest proxy in that scenario, labels absolute. */
export function svgChart(cells: Cell[], title: string, byBytes: Set<string>): string {
  const scenarios = [...new Set(cells.map((c) => c.scenario))];
  const proxies = [...new Set(cells.map((c) => c.proxy))];
  let variant = 0;
  const colour = new Map(proxies.map((p) => [p, PEER_COLORS[p] ?? COLORS[variant++ % COLORS.length]!]));
  const bw = 26, gap = 30, h = 260, top = 50, left = 40;
  // Each scenario packs only the proxies it has (variants run on one scenario), so no gaps.
  const present = (sc: string) => proxies.filter((p) => cells.some((c) => c.scenario === sc && c.proxy === p));
  const groupW = (sc: string) => Math.max(present(sc).length * bw + gap, 96); // room for the scenario label
  const width = left + scenarios.reduce((w, sc) => w + groupW(sc), 0) + 20;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      h + top + 50 + proxies.length * 14
    }" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<text x="${left}" y="36" fill="#555">bar height: relative to the fastest proxy per scenario; label: req/s (MiB/s for ${
      [...byBytes].join(", ") || "-"
    })</text>`,
    `<line x1="${left}" y1="${top + h}" x2="${width - 10}" y2="${top + h}" stroke="#333"/>`,
  ];
  let x0 = left;
  for (const sc of scenarios) {
    const cs = cells.filter((c) => c.scenario === sc);
    const val = (c: Cell) => (byBytes.has(sc) ? c.bytesPerSec : c.rps);
    const max = Math.max(...cs.map(val));
    const here = present(sc);
    here.forEach((p, i) => {
      const c = cs.find((c) => c.proxy === p)!;
      const bh = Math.max(1, Math.round((val(c) / max) * h));
      const x = x0 + i * bw;
      const label = byBytes.has(sc) ? (c.bytesPerSec / 1024 ** 2).toFixed(0) : fmtN(c.rps);
      out.push(
        `<rect x="${x}" y="${top + h - bh}" width="${bw - 4}" height="${bh}" fill="${colour.get(p)}"><title>${
          esc(`${p} ${sc}: ${fmtN(c.rps)} req/s, p99 ${fmtMs(c.p99Ms)} ms`)
        }</title></rect>`,
      );
      out.push(`<text x="${x + (bw - 4) / 2}" y="${top + h - bh - 4}" text-anchor="middle" font-size="9">${label}</text>`);
    });
    out.push(`<text x="${x0 + (here.length * bw) / 2}" y="${top + h + 16}" text-anchor="middle">${esc(sc)}</text>`);
    x0 += groupW(sc);
  }
  proxies.forEach((p, pi) => {
    const y = top + h + 40 + pi * 14;
    out.push(
      `<rect x="${left}" y="${y - 9}" width="10" height="10" fill="${colour.get(p)}"/><text x="${left + 16}" y="${y}">${esc(p)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n");
}
