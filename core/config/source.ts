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
 * A validated config as JSON text, for a worker process: regular expressions and non-finite
 * numbers survive, and so does the file it came from (plugin paths resolve against its folder).
 */
export function encodeConfig(config: Config): string {
  return JSON.stringify({ file: configSource(config).file, config }, function (this: unknown, _key, value) {
    if (value instanceof RegExp) return { $re: [value.source, value.flags] };
    if (typeof value === "number" && !Number.isFinite(value)) return { $num: String(value) };
    return value;
  });
}

export function decodeConfig(text: string): Config {
  const { file, config } = JSON.parse(text, (_key, value) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (keys.length === 1 && keys[0] === "$re") return new RegExp(value.$re[0], value.$re[1]);
      if (keys.length === 1 && keys[0] === "$num") return Number(value.$num);
    }
    return value;
  }) as { file: string; config: Config };
  setConfigSource(config, { file, at: () => file });
  return config;
}
