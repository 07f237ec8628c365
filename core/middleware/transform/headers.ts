/**
 * The built-in `headers` transform: set, add or remove request headers (what the backend gets)
 * and response headers (what the client gets). Values may use `${client_ip}`, `${request_id}`
 * (after a `request-id` middleware), `${host}`, `${path}`, `${query}`, `${method}`.
 *
 *   middleware:
 *     - headers:
 *         request: { set: { x-real-ip: "${client_ip}" }, remove: [cookie] }
 *         response: { set: { x-frame-options: DENY }, add: { vary: accept }, remove: [server] }
 */
import type { MiddlewarePlugin, Transform, TransformRequest } from "../../plugins/api.ts";
import { compileTemplate, headerName, knownKeys, mapOption } from "./template.ts";

interface Edits {
  /** Replace the header. */
  set?: Record<string, string>;
  /** Add a value (request: joined with ", "; response: another line). */
  add?: Record<string, string>;
  /** Remove the header. */
  remove?: string[];
}

export interface HeadersOptions {
  request?: Edits;
  response?: Edits;
}

type Value = (r: TransformRequest) => string;
interface Compiled {
  remove: string[];
  set: [string, Value][];
  add: [string, Value][];
}

function compile(value: unknown, where: string): Compiled | undefined {
  if (value === undefined) return undefined;
  const o = mapOption(value, where);
  knownKeys(o, ["set", "add", "remove"]);
  const pairs = (key: "set" | "add") =>
    Object.entries(mapOption(o[key], `${where}.${key}`)).map(([n, v]): [string, Value] => [
      headerName(n, `${where}.${key}`),
      compileTemplate(v, `${where}.${key}.${n}`),
    ]);
  const remove = o.remove ?? [];
  if (!Array.isArray(remove)) throw new TypeError(`${where}.remove must be a list of header names, got ${JSON.stringify(remove)}`);
  return { remove: remove.map((n) => headerName(n, `${where}.remove`)), set: pairs("set"), add: pairs("add") };
}

/** Remove, then set, then add: so `remove: [x]` with `add: { x: … }` leaves only the added value. */
function apply(
  c: Compiled,
  target: { setHeader(n: string, v: string): void; addHeader(n: string, v: string): void; removeHeader(n: string): void },
  req: TransformRequest,
): void {
  for (const n of c.remove) target.removeHeader(n);
  for (const [n, v] of c.set) target.setHeader(n, v(req));
  for (const [n, v] of c.add) target.addHeader(n, v(req));
}

export function createHeaders(options: HeadersOptions): Transform {
  const o = mapOption(options, "headers");
  knownKeys(o, ["request", "response"]);
  const request = compile(o.request, "request");
  const response = compile(o.response, "response");
  if (!request && !response) throw new TypeError("headers needs request and/or response: { set, add, remove }");
  return {
    request: request && ((req) => apply(request, req, req)),
    response: response && ((res, req) => apply(response, res, req)),
  };
}

export default {
  kind: "middleware",
  name: "headers",
  create: (options) => createHeaders(options),
} satisfies MiddlewarePlugin<HeadersOptions>;
