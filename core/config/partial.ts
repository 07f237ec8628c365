/**
 * The parts of an invalid config that did validate, so that `fulcrum check` (and a start that
 * fails) can go on to check names, references and plugins instead of stopping at the first
 * schema problem. The result is only ever checked, never served.
 */
import { configSchema, type BackendConfig, type Config, type MiddlewareConfig, type PoolConfig, type RouteConfig } from "./schema.ts";

type Path = readonly (string | number)[];
// deno-lint-ignore no-explicit-any
type AnySchema = any;

/** Strip defaults, optionals, preprocessing and transforms to reach the schema that has the shape. */
function unwrap(schema: AnySchema): AnySchema {
  let s = schema;
  for (;;) {
    const def = s?._zod?.def;
    if (!def) return s;
    if (def.type === "pipe") s = def.in.type === "transform" ? def.out : def.in;
    else if (["optional", "default", "prefault", "nullable"].includes(def.type)) s = def.innerType;
    else return s;
  }
}

/** The schema of the value at `path` (a pool name or an index can be anything), with its defaults. */
function schemaAt(path: Path): AnySchema {
  let s: AnySchema = configSchema;
  for (const p of path) {
    const def = unwrap(s)?._zod?.def;
    if (def?.type === "object") s = def.shape[p];
    else if (def?.type === "array") s = def.element;
    else if (def?.type === "record") s = def.valueType;
    else return undefined;
  }
  return s;
}

/** Keys the schema accepts at `path`, for did-you-mean. */
export function knownKeys(path: Path): string[] {
  let def = unwrap(schemaAt(path))?._zod?.def;
  // A list whose one item the file wrote as a map (a lone listener, `listen: { address, h2c }`): the item's keys.
  if (def?.type === "array") def = unwrap(def.element)?._zod?.def;
  return def?.type === "object" ? Object.keys(def.shape) : [];
}

function parse<T>(path: Path, value: unknown): T | undefined {
  const r = schemaAt(path)?.safeParse(value);
  return r?.success ? (r.data as T) : undefined;
}

const isMap = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);

/** A strategy or middleware entry that did not validate: no name and no plugin, so nothing loads or creates it. */
const unusable = () => ({ name: undefined, plugin: undefined, options: {} });

/** What the later checks must skip in a salvaged config. */
export interface Salvaged {
  readonly config: Config | undefined;
  /** One line each: what could not be checked at all, and why. */
  readonly notes: string[];
  /** `pools` was not a map: no pool exists to check references against. */
  readonly poolsUnreadable: boolean;
  /** Routes whose `pool` was not a string. */
  readonly routesWithoutPool: ReadonlySet<RouteConfig>;
  /** The original index of each kept backend, where some backends of a pool did not validate. */
  readonly backendIndex: ReadonlyMap<readonly BackendConfig[], readonly number[]>;
}

/**
 * Keep what validates of a config that failed the schema: every top-level setting that
 * validates on its own (others take their defaults), every pool by name with its strategy and
 * its valid backends, every route at its index with its pool and its valid middleware (an
 * invalid entry stays in place as an unusable one, so indices and positions still match).
 */
export function salvage(data: unknown): Salvaged {
  const routesWithoutPool = new Set<RouteConfig>();
  const backendIndex = new Map<readonly BackendConfig[], readonly number[]>();
  const out = { config: undefined, notes: [], poolsUnreadable: false, routesWithoutPool, backendIndex };
  if (!isMap(data)) return { ...out, notes: ["the config is not a map; nothing else could be checked"] };
  const top: Record<string, unknown> = {};
  for (const key of knownKeys([])) {
    if (key !== "pools" && key !== "routes" && data[key] !== undefined && parse([key], data[key]) !== undefined) top[key] = data[key];
  }
  const config = parse<Config>([], { ...top, pools: {} });
  if (!config) return { ...out, notes: ["nothing else could be checked"] };
  const notes: string[] = [];

  const pools = data.pools;
  if (isMap(pools)) {
    for (const [name, raw] of Object.entries(pools)) {
      const whole = parse<PoolConfig>(["pools", name], raw);
      if (whole) {
        config.pools[name] = whole;
        continue;
      }
      const fields = isMap(raw) ? raw : {};
      const pool = parse<PoolConfig>(["pools", name], { backends: ["http://unchecked.invalid"] })!;
      pool.strategy = parse<PoolConfig["strategy"]>(["pools", name, "strategy"], fields.strategy) ?? unusable();
      const backends: BackendConfig[] = [];
      const index: number[] = [];
      (Array.isArray(fields.backends) ? fields.backends : []).forEach((b, i) => {
        const backend = parse<BackendConfig>(["pools", name, "backends", i], b);
        if (backend) backends.push(backend), index.push(i);
      });
      pool.backends = backends;
      backendIndex.set(backends, index);
      config.pools[name] = pool;
    }
  } else notes.push("pools is not a map, so no pool's strategy and no route's pool could be checked");

  const routes = data.routes;
  if (Array.isArray(routes)) {
    config.routes = routes.map((raw, i) => {
      const whole = parse<RouteConfig>(["routes", i], raw);
      if (whole) return whole;
      const fields = isMap(raw) ? raw : {};
      const route = parse<RouteConfig>(["routes", i], { pool: "" })!;
      if (typeof fields.pool === "string") route.pool = fields.pool;
      else routesWithoutPool.add(route);
      if (Array.isArray(fields.middleware)) {
        route.middleware = fields.middleware.map((m, j) => parse<MiddlewareConfig>(["routes", i, "middleware", j], m) ?? unusable());
      }
      return route;
    });
  } else if (routes !== undefined) {
    config.routes = [];
    notes.push("routes is not a list, so no route or middleware could be checked");
  }
  return { ...out, config, notes, poolsUnreadable: !isMap(pools) };
}
