/**
 * `fulcrum types`: the plugin API as a `.d.ts` declaring the module `"fulcrum"`, so plugin authors
 * get editor types without this repository. The API's files import only each other's types, and are types-only
 * (values are `declare`d), which makes it valid inside `declare module` once `declare` is dropped.
 */
import { fileURLToPath } from "node:url";

/** The files of the plugin API, `api.ts` first: `fulcrum types` prints them together. */
const PLUGIN_API_FILES = ["api.ts", "api-request.ts", "api-host.ts", "api-middleware.ts"] as const;

/** The plugin API's sources: embedded by `bun build --compile`, else read with `read`. */
export async function pluginApiSources(read: (path: string) => Promise<string>): Promise<string[]> {
  try {
    // Static specifiers, so that `bun build --compile` embeds each file.
    const mods = (await Promise.all([
      import("./api.ts", { with: { type: "text" } }),
      import("./api-request.ts", { with: { type: "text" } }),
      import("./api-host.ts", { with: { type: "text" } }),
      import("./api-middleware.ts", { with: { type: "text" } }),
    ])) as unknown as { default: string }[];
    if (mods.every((m) => typeof m.default === "string")) return mods.map((m) => m.default);
  } catch {
    // Deno without --unstable-raw-imports: read the files instead.
  }
  return Promise.all(PLUGIN_API_FILES.map((f) => read(fileURLToPath(new URL(`./${f}`, import.meta.url)))));
}

export function pluginApiDts(sources: readonly string[], version: string): string {
  const body = sources
    .join("\n")
    // The parts import each other's types; inside one `declare module` they are in scope already.
    .replace(/^import type \{[^}]*\} from "\.\/api[\w-]*\.ts";\n/gm, "")
    .replace(/^export type \* from "\.\/api[\w-]*\.ts";\n/gm, "")
    .replace(/^export declare /gm, "export ")
    .split("\n")
    .map((line) => (line ? `  ${line}` : line))
    .join("\n");
  return `// Fulcrum ${version} plugin API. Save as fulcrum.d.ts next to your plugins:\n` +
    `//   fulcrum types > fulcrum.d.ts\n` +
    `// and import from "fulcrum" in your plugin: import type { StrategyPlugin } from "fulcrum";\n` +
    `declare module "fulcrum" {\n${body.trimEnd()}\n}\n`;
}
