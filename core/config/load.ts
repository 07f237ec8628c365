/**
 * Reads a YAML config, substitutes `${ENV}` references, validates it against the schema and
 * reports every problem at once as `file:line:col: path message, got VALUE`.
 */
import { REQUEST_VARIABLES } from "./route-schema.ts";
import { isMap, isScalar, LineCounter, parseDocument, visit, type Document, type Node } from "yaml";
import type { z } from "zod";
import { configSchema, type Config } from "./schema.ts";
import { didYouMean } from "./units.ts";
import { knownKeys, salvage, type Salvaged } from "./partial.ts";
import { adminExposure } from "./exposure.ts";
import { backendId, ConfigError, type ConfigSource, setConfigSource } from "./source.ts";

export { backendId, ConfigError, type ConfigSource, configSource } from "./source.ts";

/** A config that failed to load; `problems` holds one `file:line:col: …` line each. */
export interface ParseOptions {
  /** Shown in messages; usually the path as the user typed it. */
  file: string;
  env: (name: string) => string | undefined;
  /** Registered strategy names, to reject unknown ones with the list of known ones. */
  strategyNames?: readonly string[];
  /** Registered middleware names, likewise. */
  middlewareNames?: readonly string[];
}

type Path = readonly (string | number)[];

/**
 * Parse and validate config text. Throws {@link ConfigError} listing every problem: schema
 * problems do not stop the checks of names and references in the parts that did validate.
 */
export function parseConfig(text: string, options: ParseOptions): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number | undefined) => {
    const { line, col } = lines.linePos(offset ?? 0);
    return `${options.file}:${line}:${col}`;
  };

  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${at(e.pos[0])}: ${yamlMessage(e.code, e.message)}`), [
      `${options.file}: YAML syntax error; nothing else could be checked`,
    ]);
  }

  const problems: { offset: number; text: string }[] = [];
  substituteEnv(
    doc,
    options.env,
    (node, name) =>
      problems.push({
        offset: node.range?.[0] ?? 0,
        text: `\${${name}} is not set in the environment and has no default (\${${name}:-default})`,
      }),
  );
  const data: unknown = doc.toJS();
  if (data === null || data === undefined) throw new ConfigError([`${at(0)}: the config is empty`]);

  const envProblems = new Set(problems.map((p) => p.offset));
  // jitless: zod would otherwise compile a parser for every object schema with `new Function`,
  // which pays off only over many parses; a config is parsed once (measured: ~45 -> ~34 ms CPU for
  // the first parse from source).
  const result = configSchema.safeParse(data, { jitless: true });
  let salvaged: Salvaged | undefined;
  if (!result.success) {
    for (const issue of result.error.issues) {
      const p = describeIssue(issue, doc, data);
      // A missing variable already explains why the value there is wrong.
      if (!envProblems.has(p.offset)) problems.push(p);
    }
    salvaged = salvage(data);
  }
  const config = result.success ? result.data : salvaged?.config;
  if (config) {
    for (const p of semanticChecks(config, options, salvaged)) {
      problems.push({ offset: nodeOffset(doc, p.path), text: `${formatPath(p.path)} ${p.message}` });
    }
    const source: ConfigSource = { file: options.file, at: (path) => at(nodeOffset(doc, path)) };
    setConfigSource(config, source);
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.offset - b.offset);
    const unchecked = (salvaged?.notes ?? []).map((n) => `${options.file}: ${n}`);
    throw new ConfigError(problems.map((p) => `${at(p.offset)}: ${p.text}`), unchecked, config);
  }
  return config!;
}

function yamlMessage(code: string, message: string): string {
  if (code === "DUPLICATE_KEY") return "duplicate key: each key (e.g. a pool name) may appear only once in a map";
  // The yaml package appends a source excerpt after the first line; the position says where.
  return `YAML syntax error: ${message.split("\n")[0]}`;
}

/**
 * Replace `${NAME}` and `${NAME:-default}` in string values; unquoted results are re-typed. The
 * lower-case request variables ({@link REQUEST_VARIABLES}) are left for the middleware.
 */
function substituteEnv(doc: Document, env: ParseOptions["env"], missing: (node: Node, name: string) => void) {
  visit(doc, {
    Scalar(key, node) {
      if (key === "key" || typeof node.value !== "string" || !node.value.includes("${")) return;
      const replaced = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (m, name: string, def?: string) => {
        // `${client_ip}`, `${path}`, …: filled in per request by the built-in transforms.
        if (REQUEST_VARIABLES.has(name)) return m;
        const value = env(name) ?? def;
        if (value === undefined) missing(node, name);
        return value ?? "";
      });
      // `weight: ${W}` should become the number 3, as if the user had typed it; so should a
      // quoted lone reference, since flow maps (`{ weight: "${W}" }`) need the quotes.
      const lone = /^\$\{[^}]+\}$/.test(node.value);
      node.value = node.type === "PLAIN" || lone ? plainScalar(replaced) : replaced;
    },
  });
}

function plainScalar(text: string): unknown {
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (text === "true" || text === "false") return text === "true";
  return text;
}

function describeIssue(issue: z.core.$ZodIssue, doc: Document, data: unknown): { offset: number; text: string } {
  const path = asWritten(issue.path as Path, data);
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(path);
    const key = issue.keys[0]!;
    const hint = didYouMean(key, known);
    const where = [...path, key];
    const suggestion = hint ? `; did you mean "${hint}"?` : known.length ? ` (known keys: ${known.join(", ")})` : "";
    return { offset: keyOffset(doc, where), text: `${formatPath(where)} is not a known key${suggestion}` };
  }
  const value = valueAt(data, path);
  const parent = path.length ? valueAt(data, path.slice(0, -1)) : undefined;
  // A shorthand (`budget: 30%` for `budget: { ratio: 30% }`) has no key to point at: blame the shorthand.
  if (value === undefined && parent !== undefined && (parent === null || typeof parent !== "object")) {
    return { offset: nodeOffset(doc, path.slice(0, -1)), text: `${formatPath(path.slice(0, -1))} ${issue.message}, got ${show(parent)}` };
  }
  const text = value === undefined
    ? `${formatPath(path)} is required (${issue.message.replace(/^must /, "it must ")})`
    : `${formatPath(path)} ${issue.message}, got ${show(value)}`;
  return { offset: nodeOffset(doc, path), text };
}

/**
 * Semantic checks the schema cannot express: cross references and registered names. On a
 * salvaged config, references to what could not be read are not checked.
 */
function semanticChecks(config: Config, options: ParseOptions, salvaged?: Salvaged): { path: Path; message: string }[] {
  const out: { path: Path; message: string }[] = [];
  const poolNames = Object.keys(config.pools);
  const pools = !salvaged?.poolsUnreadable;
  if (pools && poolNames.length === 0) out.push({ path: ["pools"], message: "must define at least one pool" });
  if (pools && !config.routes && poolNames.length > 1) {
    out.push({ path: ["pools"], message: "has more than one pool, so routes must say which requests go to which pool" });
  }
  config.routes?.forEach((r, i) => {
    r.middleware.forEach((m, j) => {
      if (m.name === undefined || !options.middlewareNames || options.middlewareNames.includes(m.name)) return;
      const hint = didYouMean(m.name, options.middlewareNames);
      out.push({
        path: ["routes", i, "middleware", j],
        message: `names no known middleware, got ${show(m.name)}${hint ? `; did you mean "${hint}"?` : ""} ` +
          `(known: ${options.middlewareNames.join(", ")}; or { plugin: ./file.ts })`,
      });
    });
    r.middleware.forEach((m, j) => {
      // A single-value option (`- strip-prefix: /api`) has no store.
      const store = typeof m.options === "object" ? m.options.store : undefined;
      // An invalid `stores` was dropped by the salvage: its names cannot be checked.
      if (store === undefined || (salvaged && config.stores === undefined)) return;
      const names = Object.keys(config.stores ?? {});
      if (typeof store === "string" && names.includes(store)) return;
      const hint = typeof store === "string" ? didYouMean(store, names) : undefined;
      out.push({
        path: ["routes", i, "middleware", j, ...(m.plugin === undefined ? [m.name!] : ["options"]), "store"],
        message: `names no store, got ${show(store)}${
          hint ? `; did you mean "${hint}"?` : names.length ? ` (stores: ${names.join(", ")})` : " (declare it under the top-level stores)"
        }`,
      });
    });
    if (pools && !salvaged?.routesWithoutPool.has(r) && !(r.pool in config.pools)) {
      const hint = didYouMean(r.pool, poolNames);
      out.push({
        path: ["routes", i, "pool"],
        message: `names no pool, got ${show(r.pool)}${hint ? `; did you mean "${hint}"?` : ` (pools: ${poolNames.join(", ")})`}`,
      });
    }
  });
  for (const [name, pool] of Object.entries(config.pools)) {
    const s = pool.strategy;
    if (s.name !== undefined && options.strategyNames && !options.strategyNames.includes(s.name)) {
      const hint = didYouMean(s.name, options.strategyNames);
      out.push({
        path: ["pools", name, "strategy"],
        message: `is not a known strategy, got ${show(s.name)}${hint ? `; did you mean "${hint}"?` : ""} (known: ${
          options.strategyNames.join(", ")
        })`,
      });
    }
    const seen = new Set<string>();
    const index = salvaged?.backendIndex.get(pool.backends);
    pool.backends.forEach((b, i) => {
      const id = backendId(b);
      if (seen.has(id)) {
        out.push({ path: ["pools", name, "backends", index?.[i] ?? i], message: `duplicates backend ${show(id)} in this pool` });
      }
      seen.add(id);
    });
  }
  out.push(...adminExposure(config, options.env));
  return out;
}

/** A backend's id: the configured one, else `host:port` of its URL. */
function formatPath(path: Path): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${p}` : p;
  return out || "(top level)";
}

function show(value: unknown): string {
  const s = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The issue's path in the file as written: an index into a value the file wrote as a map (a lone
 * listener, `listen: { address, h2c }`, which the schema reads as a list of one) is dropped.
 */
function asWritten(path: Path, data: unknown): Path {
  let v: unknown = data;
  const out: (string | number)[] = [];
  for (const p of path) {
    if (typeof p === "number" && v !== null && typeof v === "object" && !Array.isArray(v)) continue;
    out.push(p);
    v = v && typeof v === "object" ? (v as Record<string | number, unknown>)[p] : undefined;
  }
  return out;
}

function valueAt(data: unknown, path: Path): unknown {
  let v: unknown = data;
  for (const p of path) v = v && typeof v === "object" ? (v as Record<string | number, unknown>)[p] : undefined;
  return v;
}

/** Offset of the deepest node that exists along `path` (a missing key points at its parent). */
function nodeOffset(doc: Document, path: Path): number {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as Node | undefined;
    if (node && typeof node === "object" && node.range) return node.range[0];
  }
  return 0;
}

function keyOffset(doc: Document, path: Path): number {
  const parent = doc.getIn(path.slice(0, -1), true);
  const key = path[path.length - 1];
  if (isMap(parent)) {
    for (const pair of parent.items) {
      if (isScalar(pair.key) && pair.key.value === key && pair.key.range) return pair.key.range[0];
    }
  }
  return nodeOffset(doc, path.slice(0, -1));
}

/** Read and parse a config file. */
export async function loadConfigFile(
  path: string,
  options: Omit<ParseOptions, "file"> & { readTextFile: (p: string) => Promise<string> },
): Promise<Config> {
  let text: string;
  try {
    text = await options.readTextFile(path);
  } catch (e) {
    // Deno's permission error: `deno task start` may read Fulcrum's folder and the one it was started from.
    const hint = (e as Error)?.name === "NotCapable" ? "; with deno task start, run it from the config's folder" : "";
    throw new ConfigError([`${path}:1:1: cannot read the config file (${(e as Error).message})${hint}`]);
  }
  return parseConfig(text, { ...options, file: path });
}
