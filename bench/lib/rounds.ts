// Alternating rounds for the side-by-side benches (bench/h2.ts, tls.ts, ws.ts): every round runs each
// scenario once on each server of its pair, the order flipped every other round so drift hits both
// alike; the table shows the medians of the rounds and the ratio Fulcrum / nginx.
import { sleep } from "./proc.ts";

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** /proc/loadavg, trimmed. */
export const loadAverage = async () => (await Bun.file("/proc/loadavg").text()).trim();

/** Results of every round, by `${scenario} ${server name}`. */
export type Cells<R> = Map<string, R[]>;

/**
 * `runs` rounds: each scenario on the servers `pairOf(scenario)` in that order, reversed every other
 * round, 500 ms apart. `run` gets the round counted from 1 (for its log line).
 */
export async function alternatingRounds<S extends { name: string }, R>(
  runs: number,
  scenarios: string[],
  pairOf: (scenario: string) => readonly S[],
  run: (scenario: string, server: S, round: number) => Promise<R>,
): Promise<Cells<R>> {
  const cells: Cells<R> = new Map();
  for (let round = 0; round < runs; round++) {
    for (const scenario of scenarios) {
      const pair = pairOf(scenario);
      const order = round % 2 === 0 ? pair : [...pair].reverse();
      for (const s of order) {
        const r = await run(scenario, s, round + 1);
        const key = `${scenario} ${s.name}`;
        cells.set(key, [...(cells.get(key) ?? []), r]);
        await sleep(500);
      }
    }
  }
  return cells;
}

export interface Columns<R> {
  /** Unit of the rate columns ("req/s"), the latency columns ("p99") and the error column ("errors"). */
  unit: string;
  latency: string;
  errors: string;
  rateOf(r: R): number;
  latencyOf(r: R): number;
  /** The median latency as printed ("1.23 ms"). */
  latencyText(ms: number): string;
  errorsOf(r: R): number;
}

/** The markdown table: a row per [scenario, Fulcrum's server name, nginx's], medians, ratio, errors summed. */
export function comparisonTable<R>(cells: Cells<R>, rows: [string, string, string][], c: Columns<R>): string[] {
  const lines = [
    `| scenario | Fulcrum ${c.unit} | nginx ${c.unit} | ratio | Fulcrum ${c.latency} | nginx ${c.latency} | ${c.errors} F/n |`,
    "|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const [scenario, fulcrum, nginx] of rows) {
    const f = cells.get(`${scenario} ${fulcrum}`)!;
    const n = cells.get(`${scenario} ${nginx}`)!;
    const fr = median(f.map(c.rateOf));
    const nr = median(n.map(c.rateOf));
    const errors = (rs: R[]) => rs.reduce((a, r) => a + c.errorsOf(r), 0);
    lines.push(
      `| ${scenario} | ${Math.round(fr)} | ${Math.round(nr)} | ${(fr / nr).toFixed(2)} | ${c.latencyText(median(f.map(c.latencyOf)))} | ${
        c.latencyText(median(n.map(c.latencyOf)))
      } | ${errors(f)}/${errors(n)} |`,
    );
  }
  return lines;
}
