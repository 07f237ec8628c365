/**
 * The layout's rules, read from the source itself so they hold after every change: no import
 * cycles between files, no file over 400 lines, each core/ folder imports only the folders its
 * README allows, and only core/runtime/ touches Bun or Deno.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = join(import.meta.dir, "..");
const MAX_LINES = 400;

/**
 * What each core/ folder may import from the others (its README says the same). The order is the
 * layering, lowest first. `core/runtime/types.ts` is the runtime boundary's interface: any folder
 * may use it; the runtime implementations (`bun.ts`, `deno.ts`, …) are picked by main.ts alone.
 */
const ALLOWED: Record<string, readonly string[]> = {
  lib: [],
  http1: ["lib"],
  config: ["lib"],
  upstream: ["http1", "lib"],
  plugins: ["config", "lib"],
  resilience: ["config", "lib", "upstream"],
  pool: ["config", "lib", "plugins", "resilience", "upstream"],
  discovery: ["config", "lib", "plugins", "pool"],
  telemetry: ["config", "http1", "lib", "plugins", "pool", "upstream"],
  middleware: ["config", "lib", "plugins", "stores"],
  stores: ["config", "lib"],
  listener: ["http1", "lib"],
  http2: ["http1", "lib"],
  tls: ["config", "lib", "upstream"],
  proxy: ["config", "discovery", "http1", "lib", "middleware", "plugins", "pool", "resilience", "stores", "telemetry", "tls", "upstream"],
  admin: ["config", "lib", "plugins", "pool", "proxy", "telemetry", "tls"],
  cluster: ["admin", "config", "lib", "plugins", "pool", "proxy", "telemetry", "tls"],
  runtime: ["http1", "http2", "lib", "listener", "plugins", "upstream"],
};

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) walk(rel, out);
    else if (rel.endsWith(".ts")) out.push(rel);
  }
  return out;
}

/** Source without comments, so a comment that mentions `Bun.serve` or an old import is not code. */
function code(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
}

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["']([^"']+)["']/gm;

/** Relative imports of `file` (static, dynamic and type-only), as paths from the root. */
function importsOf(file: string, src: string): string[] {
  const out: string[] = [];
  for (const m of code(src).matchAll(IMPORT)) {
    const spec = m[1]!;
    if (spec.startsWith(".")) out.push(normalize(join(dirname(file), spec)));
  }
  return out;
}

const SOURCES = ["main.ts", "cli.ts", "cli-args.ts", ...walk("core"), ...walk("strategies"), ...walk("plugins")];
const TEXT = new Map(SOURCES.map((f) => [f, readFileSync(join(ROOT, f), "utf8")]));
const GRAPH = new Map(SOURCES.map((f) => [f, importsOf(f, TEXT.get(f)!)]));
const folderOf = (f: string) => (f.startsWith("core/") ? f.split("/")[1]! : undefined);

/** Strongly connected components of more than one file, or a file importing itself (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)!.includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

describe("the layout", () => {
  test("every relative import names a file that exists", () => {
    const missing: string[] = [];
    for (const [f, deps] of GRAPH) for (const d of deps) if (!existsSync(join(ROOT, d))) missing.push(`${f} → ${d}`);
    expect(missing).toEqual([]);
  });

  test("no import cycles between files (type-only imports count)", () => {
    expect(cycles(GRAPH)).toEqual([]);
  });

  test("the cycle finder finds a cycle", () => {
    const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
    expect(cycles(g)).toEqual([["a", "b", "c"]]);
  });

  test(`no source file is over ${MAX_LINES} lines`, () => {
    const long = SOURCES.map((f) => [f, TEXT.get(f)!.split("\n").length] as const).filter(([, n]) => n > MAX_LINES);
    expect(long.map(([f, n]) => `${f}: ${n} lines`)).toEqual([]);
  });

  test("each core/ folder imports only the folders it is allowed to", () => {
    const folders = readdirSync(join(ROOT, "core")).filter((d) => statSync(join(ROOT, "core", d)).isDirectory());
    expect(folders.filter((d) => !(d in ALLOWED))).toEqual([]);
    const bad: string[] = [];
    for (const [f, deps] of GRAPH) {
      const from = folderOf(f);
      if (from === undefined) continue;
      for (const d of deps) {
        const to = folderOf(d);
        if (to === undefined) {
          if (d !== "package.json") bad.push(`${f} → ${d} (core/ imports nothing outside it)`);
          continue;
        }
        if (to === from || d === "core/runtime/types.ts") continue;
        if (!ALLOWED[from]!.includes(to)) bad.push(`${f} → ${d}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test("each core/ folder has a README that names what it may import", () => {
    const missing: string[] = [];
    for (const folder of Object.keys(ALLOWED)) {
      const readme = join(ROOT, "core", folder, "README.md");
      if (!existsSync(readme)) missing.push(`core/${folder}/README.md is missing`);
      else {
        const text = readFileSync(readme, "utf8");
        for (const dep of ALLOWED[folder]!) if (!text.includes(`${dep}/`)) missing.push(`core/${folder}/README.md does not name ${dep}/`);
      }
    }
    expect(missing).toEqual([]);
  });

  test("only core/runtime/ touches Bun or Deno, and only main.ts picks a runtime", () => {
    const bad: string[] = [];
    for (const [f, src] of TEXT) {
      const deps = GRAPH.get(f)!;
      if (f !== "main.ts" && !f.startsWith("core/runtime/")) {
        for (const d of deps) if (d.startsWith("core/runtime/") && d !== "core/runtime/types.ts") bad.push(`${f} imports ${d}`);
      }
      if (f.startsWith("core/runtime/") || f === "main.ts") continue;
      const c = code(src);
      if (/\b(?:Bun|Deno)\.[a-zA-Z]/.test(c) || /from\s*["']bun["']/.test(c)) bad.push(`${f} touches Bun or Deno`);
    }
    expect(bad).toEqual([]);
  });

  test("built-in strategies import only the public plugin API, as a user's plugin would", () => {
    const bad: string[] = [];
    for (const [f, deps] of GRAPH) {
      if (!f.startsWith("strategies/")) continue;
      for (const d of deps) if (d !== "core/plugins/api.ts") bad.push(`${f} → ${d}`);
    }
    for (const [f, deps] of GRAPH) {
      if (f.startsWith("core/")) {
        for (const d of deps) if (d.startsWith("strategies/") || d.startsWith("plugins/")) bad.push(`${f} → ${d}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test("the graph was read: core/proxy/gateway.ts imports core/proxy/proxy.ts", () => {
    expect(GRAPH.get("core/proxy/gateway.ts")).toContain("core/proxy/proxy.ts");
    expect(relative(ROOT, join(ROOT, "core"))).toBe("core");
  });
});
