/**
 * What the rest of Fulcrum needs of a loaded config without loading the loader: its problems
 * ({@link ConfigError}), where it came from ({@link configSource}) and backend ids. No yaml and
 * no zod here, so a worker process (which gets its config already validated from its primary)
 * and the request path never load them.
 */
import type { Config } from "./schema.ts";

export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    /** What could not be checked because of these problems, one line each (not problems themselves). */
    readonly unchecked: readonly string[] = [],
    /** The parts that did validate, for the checks that come after this one (`fulcrum check`). */
    readonly partial?: Config,
  ) {
    super(`invalid config:\n${problems.join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Where a parsed config came from, to point plugin problems at the line that named the plugin. */
export interface ConfigSource {
  /** The config file as given (relative paths in it resolve against its folder). */
  readonly file: string;
  /** `file:line:col` of the value at `path` (or of its closest existing parent). */
  at(path: readonly (string | number)[]): string;
}

const SOURCE = Symbol("fulcrum.configSource");

/** The {@link ConfigSource} of a config returned by `parseConfig` (or {@link decodeConfig}). */
export function configSource(config: Config): ConfigSource {
  return (config as { [SOURCE]?: ConfigSource })[SOURCE] ?? { file: "config", at: () => "config" };
}

export function setConfigSource(config: Config, source: ConfigSource): void {
  Object.defineProperty(config, SOURCE, { value: source });
}

export function backendId(b: { url: string; id?: string | undefined }): string {
  if (b.id) return b.id;
  const u = new URL(b.url);
  return `${u.hostname}:${u.port || (u.protocol === "https:" ? "443" : "80")}`;
}

/**
 * A validated config as JSON text, for another thread or process: regular expressions and
 * non-finite numbers survive, and so does where it came from: the file (plugin paths resolve
 * against its folder) and the `file:line:col` of every value, for later problems (plugins,
 * certificates) to point at.
 */
export function encodeConfig(config: Config): string {
  const source = configSource(config);
  const positions: Record<string, string> = {};
  const walk = (v: unknown, path: (string | number)[]) => {
    positions[JSON.stringify(path)] = source.at(path);
    if (v === null || typeof v !== "object" || v instanceof RegExp) return;
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
    else for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
  };
  walk(config, []);
  return JSON.stringify({ file: source.file, positions, config }, function (this: unknown, _key, value) {
    if (value instanceof RegExp) return { $re: [value.source, value.flags] };
    if (typeof value === "number" && !Number.isFinite(value)) return { $num: String(value) };
    return value;
  });
}

export function decodeConfig(text: string): Config {
  const { file, positions, config } = JSON.parse(text, (_key, value) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (keys.length === 1 && keys[0] === "$re") return new RegExp(value.$re[0], value.$re[1]);
      if (keys.length === 1 && keys[0] === "$num") return Number(value.$num);
    }
    return value;
  }) as { file: string; positions: Record<string, string>; config: Config };
  const at = (path: readonly (string | number)[]) => {
    for (let n = path.length; n >= 0; n--) {
      const p = positions[JSON.stringify(path.slice(0, n))];
      if (p !== undefined) return p;
    }
    return file;
  };
  setConfigSource(config, { file, at });
  return config;
}
