/** The request-target's path as routing and the backend both see it (dot segments resolved). */
import { RequestError } from "./request-head.ts";

const DOT = /^(?:\.|%2e)$/i;
const DOTDOT = /^(?:\.|%2e){2}$/i;

/**
 * The path with `.` and `..` segments resolved (RFC 3986 §5.2.4, and `%2e` as a dot as the WHATWG
 * URL parser does): routing and the backend must see the same path, or `/x/../admin` slips past
 * a route for `/admin`. A backslash in the path is refused, since some backends read it as `/`.
 */
export function normalizeTarget(target: string): string {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  if (path.includes("\\")) throw new RequestError(400, "backslash in request path");
  if (!path.includes("/.") && (path.indexOf("%") < 0 || !/%2e/i.test(path))) return target;
  const segments = path.split("/");
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (DOT.test(seg)) {
      if (last) out.push("");
    } else if (DOTDOT.test(seg)) {
      out.pop();
      if (last) out.push("");
    } else out.push(seg);
  }
  const normal = `/${out.join("/")}`;
  return q < 0 ? normal : normal + target.slice(q);
}
