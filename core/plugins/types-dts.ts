/**
 * `fulcrum types`: the plugin API as a `.d.ts` declaring the module `"fulcrum"`, so plugin authors
 * get editor types without this repository. plugin-api.ts is kept import-free and types-only
 * (values are `declare`d), which makes it valid inside `declare module` once `declare` is dropped.
 */
export function pluginApiDts(source: string, version: string): string {
  const body = source
    .replace(/^export declare /gm, "export ")
    .split("\n")
    .map((line) => (line ? `  ${line}` : line))
    .join("\n");
  return `// Fulcrum ${version} plugin API. Save as fulcrum.d.ts next to your plugins:\n` +
    `//   fulcrum types > fulcrum.d.ts\n` +
    `// and import from "fulcrum" in your plugin: import type { StrategyPlugin } from "fulcrum";\n` +
    `declare module "fulcrum" {\n${body.trimEnd()}\n}\n`;
}
