/**
 * Which route a request takes. Every route's conditions must all hold (host, path prefix,
 * path_regex, methods, headers, query); among the routes that match, the most specific wins,
 * in this order (docs/routing.md):
 *
 *   1. host: exact > wildcard (the longer suffix first) > none;
 *   2. the longer path prefix;
 *   3. a path_regex > none;
 *   4. methods > none (for HEAD: a route naming HEAD > one that has it through GET > none);
 *   5. more header conditions;
 *   6. more query conditions;
 *   7. the order in the config.
 *
 * Steps 2 and 4–7 are those of the Kubernetes Gateway API's HTTPRoute; unlike Envoy (first
 * match in config order) or Traefik (longest rule text), reordering routes only breaks ties.
 */
import type { RouteConfig } from "../config/schema.ts";
import { isSlashed } from "../config/defaults.ts";

/** A header or query value to compare: exact, or a regex when written `/…/`. */
export interface ValueMatch {
  readonly name: string;
  /** As written in the config (for messages and for comparing conditions). */
  readonly spec: string;
  readonly exact: string | undefined;
  readonly regex: RegExp | undefined;
}

/** What a route matches, compiled once from its config. */
export interface RouteMatch {
  /** Position in the config: the last tie-breaker. */
  readonly index: number;
  readonly host: string | undefined;
  /** `*.example.com` stored as `.example.com`. */
  readonly hostSuffix: string | undefined;
  readonly path: string;
  readonly pathRegex: RegExp | undefined;
  readonly methods: ReadonlySet<string> | undefined;
  /** `methods` names GET and not HEAD: HEAD matches too (RFC 9110 §9.3.2), below a route naming HEAD. */
  readonly impliedHead: boolean;
  readonly headers: readonly ValueMatch[];
  readonly query: readonly ValueMatch[];
}

/** The parts of a request that routing reads besides host and path. */
export interface RouteRequest {
  readonly method: string;
  /** One header, lower-case name; several lines joined with ", "; null when absent. */
  header(name: string): string | null;
}

function valueMatch(name: string, spec: string): ValueMatch {
  return isSlashed(spec)
    ? { name, spec, exact: undefined, regex: new RegExp(spec.slice(1, -1)) }
    : { name, spec, exact: spec, regex: undefined };
}

export function compileMatch(m: RouteConfig["match"], index: number): RouteMatch {
  const host = m.host?.toLowerCase();
  return {
    index,
    host: host?.startsWith("*.") ? undefined : host,
    hostSuffix: host?.startsWith("*.") ? host.slice(1) : undefined,
    path: m.path,
    pathRegex: m.path_regex === undefined ? undefined : new RegExp(m.path_regex),
    methods: m.methods === undefined ? undefined : new Set(m.methods),
    impliedHead: m.methods !== undefined && m.methods.includes("GET") && !m.methods.includes("HEAD"),
    headers: Object.entries(m.headers ?? {}).map(([n, v]) => valueMatch(n, v)),
    query: Object.entries(m.query ?? {}).map(([n, v]) => valueMatch(n, v)),
  };
}

function hostRank(r: RouteMatch): number {
  return r.host ? 2 : r.hostSuffix ? 1 : 0;
}

/** Sort order of routes: the more specific first (see the file comment). */
export function byPrecedence(a: RouteMatch, b: RouteMatch): number {
  return byPrecedenceBeforeMethods(a, b) ||
    (b.methods ? 1 : 0) - (a.methods ? 1 : 0) ||
    b.headers.length - a.headers.length ||
    b.query.length - a.query.length ||
    a.index - b.index;
}

/**
 * The first of `routes` (sorted {@link byPrecedence}) whose conditions all hold. `query` is the
 * part after `?` (or ""); it is parsed only if a route with query conditions is reached.
 */
export function matchRoute<R extends RouteMatch>(
  routes: readonly R[],
  hostHeader: string | null,
  path: string,
  request: RouteRequest,
  query: string,
): R | undefined {
  // The Host is read only if a route asks for one (routes with a host sort first).
  const first = routes[0];
  let host = "";
  if (first !== undefined && (first.host !== undefined || first.hostSuffix !== undefined)) {
    host = hostHeader?.toLowerCase() ?? "";
    const colon = host.lastIndexOf(":");
    if (colon > 0 && host.indexOf("]", colon) < 0) host = host.slice(0, colon);
  }
  let params: URLSearchParams | undefined;
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i]!;
    if (r.host !== undefined && r.host !== host) continue;
    if (r.hostSuffix !== undefined && !host.endsWith(r.hostSuffix)) continue;
    if (!pathMatches(r.path, path)) continue;
    if (r.pathRegex !== undefined && !r.pathRegex.test(path)) continue;
    let implied = false;
    if (r.methods !== undefined && !r.methods.has(request.method)) {
      if (request.method !== "HEAD" || !r.impliedHead) continue;
      implied = true;
    }
    if (r.headers.length !== 0 && !allHold(r.headers, request, undefined)) continue;
    if (r.query.length !== 0 && !allHold(r.query, undefined, params ??= new URLSearchParams(query))) continue;
    if (!implied) return r;
    // HEAD through GET: a route as specific up to its methods that names HEAD itself wins.
    for (let j = i + 1; j < routes.length; j++) {
      const s = routes[j]!;
      if (s.methods === undefined || byPrecedenceBeforeMethods(r, s) !== 0) break;
      if (s.methods.has("HEAD") && matchRoute([s], hostHeader, path, request, query) !== undefined) return s;
    }
    return r;
  }
  return undefined;
}

/** {@link byPrecedence}'s steps 1–3: host, path, path_regex. */
function byPrecedenceBeforeMethods(a: RouteMatch, b: RouteMatch): number {
  return hostRank(b) - hostRank(a) ||
    (b.hostSuffix?.length ?? 0) - (a.hostSuffix?.length ?? 0) ||
    b.path.length - a.path.length ||
    (b.pathRegex ? 1 : 0) - (a.pathRegex ? 1 : 0);
}

function allHold(conds: readonly ValueMatch[], request: RouteRequest | undefined, params: URLSearchParams | undefined): boolean {
  for (const c of conds) {
    const v = request !== undefined ? request.header(c.name) : params!.get(c.name);
    if (v === null) return false;
    if (c.regex !== undefined ? !c.regex.test(v) : v !== c.exact) return false;
  }
  return true;
}

/** `/api` matches `/api` and `/api/x` but not `/apix`; a prefix ending in `/` matches anything below it. */
export function pathMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith("/") || path.length === prefix.length || path.charCodeAt(prefix.length) === 47;
}

/**
 * Routes that can never match, as `[index, why]`: an empty methods list, a path_regex whose
 * anchored literal start contradicts the path prefix, or a route every request of which a route
 * of higher precedence takes first.
 */
export function unreachableRoutes(matches: readonly RouteMatch[]): [number, string][] {
  const out: [number, string][] = [];
  const sorted = [...matches].sort(byPrecedence);
  for (const r of matches) {
    if (r.methods !== undefined && r.methods.size === 0) {
      out.push([r.index, "match.methods is empty, so no request matches it"]);
      continue;
    }
    const literal = r.pathRegex && anchoredLiteral(r.pathRegex.source);
    if (literal !== undefined && !literal.startsWith(r.path) && !r.path.startsWith(literal)) {
      out.push([r.index, `match.path_regex ${r.pathRegex} only matches paths starting with ${literal}, never under ${r.path}`]);
      continue;
    }
    for (const e of sorted) {
      if (e === r) break;
      if (covers(e, r)) {
        out.push([r.index, `routes[${e.index}] comes first (docs/routing.md) and takes every request this route matches`]);
        break;
      }
    }
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/** Whether every request `r` matches is also matched by `e`. */
function covers(e: RouteMatch, r: RouteMatch): boolean {
  const hostOk = (e.host === undefined && e.hostSuffix === undefined) ||
    (e.host !== undefined && e.host === r.host) ||
    (e.hostSuffix !== undefined && (r.host?.endsWith(e.hostSuffix) || r.hostSuffix?.endsWith(e.hostSuffix)));
  if (!hostOk || !pathMatches(e.path, r.path)) return false;
  if (e.pathRegex !== undefined && String(e.pathRegex) !== String(r.pathRegex)) return false;
  if (e.methods !== undefined && (r.methods === undefined || [...r.methods].some((m) => !e.methods!.has(m)))) return false;
  const within = (a: readonly ValueMatch[], b: readonly ValueMatch[]) =>
    a.every((c) => b.some((d) => d.name === c.name && d.spec === c.spec));
  return within(e.headers, r.headers) && within(e.query, r.query);
}

/** The literal text an `^`-anchored regex requires at the start (`^/v1/(.*)` → `/v1/`), or undefined. */
function anchoredLiteral(source: string): string | undefined {
  if (!source.startsWith("^") || source.includes("|")) return undefined;
  let out = "";
  for (let i = 1; i < source.length; i++) {
    const ch = source[i]!;
    if (ch === "\\") {
      const next = source[i + 1];
      if (next === undefined || /[A-Za-z0-9]/.test(next)) break;
      out += next;
      i++;
      continue;
    }
    if ("?*{".includes(ch)) return out.slice(0, -1);
    if (".[]()+^$".includes(ch)) break;
    out += ch;
  }
  return out;
}
