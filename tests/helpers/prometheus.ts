// A strict parser of the Prometheus text exposition format (0.0.4), for tests: every line must
// be a comment, a HELP/TYPE line, or a sample of a family declared by TYPE before it. And
// Prometheus' own checker, promtool, where it is installed (.ci/install-promtool).
import { existsSync } from "node:fs";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;

export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name, ${where}`);
      const f = families.get(name) ?? { name, type: "untyped", help: "", samples: [] };
      if (kind === "TYPE") {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) throw new Error(`bad type, ${where}`);
        f.type = rest as Family["type"];
      } else f.help = rest;
      families.set(name, f);
      return;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample, ${where}`);
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    const labels: Record<string, string> = {};
    if (labelText) {
      LABEL.lastIndex = 0;
      while (LABEL.lastIndex < labelText.length) {
        const lm = LABEL.exec(labelText);
        if (!lm) throw new Error(`bad labels, ${where}`);
        labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_s, c: string) => (c === "n" ? "\n" : c));
      }
    }
    // prom-client spells NaN "Nan" (an event-loop lag gauge read before its first sample).
    const nan = valueText === "NaN" || valueText === "Nan";
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : nan ? NaN : Number(valueText);
    if (Number.isNaN(value) && !nan) throw new Error(`bad value, ${where}`);
    const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, ""));
    if (!family) throw new Error(`sample of an undeclared family, ${where}`);
    family.samples.push({ name, labels, value });
  });
  return families;
}

/** Sum of the samples named `name` whose labels include `match`. */
export function sum(families: Map<string, Family>, name: string, match: Record<string, string> = {}): number {
  const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, ""));
  let total = 0;
  for (const s of family?.samples ?? []) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

/** Where `.ci/install-promtool` puts promtool (from Debian's prometheus package) when it is not on PATH. */
export const PROMTOOL_EXTRACTED = new URL("../../.tmp/promtool/usr/bin/promtool", import.meta.url).pathname;

/** promtool on PATH, else the extracted copy; undefined when neither exists. */
export function findPromtool(): string | undefined {
  return Bun.which("promtool") ?? (existsSync(PROMTOOL_EXTRACTED) ? PROMTOOL_EXTRACTED : undefined);
}

/**
 * Without promtool, say how to get it and skip: but CI (CI=true) must have it (.ci/run installs
 * it), so there a missing promtool fails instead.
 */
export function promtoolOrSkip(): string | undefined {
  const found = findPromtool();
  if (found === undefined) {
    const why = `promtool not found on PATH nor at ${PROMTOOL_EXTRACTED}: run \`bash .ci/install-promtool\``;
    if (process.env.CI) throw new Error(why);
    console.warn(`skipping the promtool checks: ${why}`);
  }
  return found;
}

/** `promtool check metrics` on an exposition text: its exit code and what it said (one problem a line). */
export async function promtoolCheck(promtool: string, text: string): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn([promtool, "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, output: (stdout + stderr).trim() };
}
