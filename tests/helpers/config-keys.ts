/** Every key of a config: as written in a YAML file, and as the schema declares them. */
import { isMap, isScalar, isSeq, parseDocument, type Node } from "yaml";
import { configSchema } from "../../core/config/schema.ts";

/** Maps whose keys are the user's own (labels, options, headers): the map is one key, its entries are data. */
const FREE_FORM = new Set(["labels", "options", "headers", "query"]);
/** Maps of named things (a pool, a store): the name becomes `*`. */
const NAMED = new Set(["pools", "stores"]);

/**
 * Key paths of a YAML config, normalised: a pool's name becomes `*`, a list's items `[]`
 * (`pools.*.backends[].url`). Sections are keys too (`pools.*.health`); a list of scalars is
 * one key (`retry.on`), and so is a list whose items may be scalars (`backends`, short forms).
 */
export function yamlKeys(text: string): Set<string> {
  const out = new Set<string>();
  const walk = (node: unknown, path: string) => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = String(isScalar(pair.key) ? pair.key.value : pair.key);
        const child = NAMED.has(path) ? `${path}.*` : path ? `${path}.${key}` : key;
        out.add(child);
        if (!FREE_FORM.has(key)) walk(pair.value, child);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) walk(item, `${path}[]`);
    }
  };
  walk(parseDocument(text).contents as Node, "");
  return out;
}

/** Key paths the config schema accepts, normalised as {@link yamlKeys} does. */
export function schemaKeys(): Set<string> {
  const out = new Set<string>();
  // deno-lint-ignore no-explicit-any
  const unwrap = (s: any): any => {
    for (;;) {
      const def = s?._zod?.def;
      if (!def) return s;
      if (def.type === "pipe") s = def.in.type === "transform" ? def.out : def.in;
      else if (["optional", "default", "prefault", "nullable"].includes(def.type)) s = def.innerType;
      else return s;
    }
  };
  // deno-lint-ignore no-explicit-any
  const walk = (schema: any, path: string) => {
    const def = unwrap(schema)?._zod?.def;
    if (def?.type === "object") {
      for (const [key, value] of Object.entries(def.shape)) {
        const child = path ? `${path}.${key}` : key;
        out.add(child);
        if (!FREE_FORM.has(key)) walk(value, child);
      }
    } else if (def?.type === "array") walk(def.element, `${path}[]`);
    else if (def?.type === "record" && NAMED.has(path)) {
      out.add(`${path}.*`);
      walk(def.valueType, `${path}.*`);
    }
  };
  walk(configSchema, "");
  return out;
}
