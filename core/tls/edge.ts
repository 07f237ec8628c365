/**
 * What plain listeners answer themselves, before routing: ACME http-01 challenges
 * (`/.well-known/acme-challenge/TOKEN`, on every plain listener) and, on a `redirect_https`
 * listener, a 308 to the same host and path over HTTPS.
 */
import { Buffer } from "node:buffer";
import type { RawExchange } from "../runtime/types.ts";

export const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/** The http-01 key authorizations of the orders in progress, by token. */
export class Challenges {
  readonly #tokens = new Map<string, string>();
  get size(): number {
    return this.#tokens.size;
  }
  set(token: string, keyAuthorization: string): void {
    this.#tokens.set(token, keyAuthorization);
  }
  delete(token: string): void {
    this.#tokens.delete(token);
  }
  /** The answer for a request path, or undefined when it is no challenge of ours. */
  answer(path: string): string | undefined {
    if (this.#tokens.size === 0 || !path.startsWith(CHALLENGE_PREFIX)) return undefined;
    return this.#tokens.get(path.slice(CHALLENGE_PREFIX.length));
  }
}

const TEXT = ["content-type", "text/plain; charset=utf-8"];

/** Answer `raw` if it is an ACME challenge in progress; false otherwise (route it). */
export function answerChallenge(raw: RawExchange, challenges: Challenges | undefined): boolean {
  if (challenges === undefined || challenges.size === 0) return false;
  const target = raw.target;
  const q = target.indexOf("?");
  const body = challenges.answer(q < 0 ? target : target.slice(0, q));
  if (body === undefined) return false;
  const bytes = Buffer.from(body, "latin1");
  raw.respond(200, "OK", TEXT, raw.method === "HEAD" ? null : bytes, bytes.length);
  return true;
}

/** `https://host[:port]/same/path?query` for a request that came in over plain HTTP; undefined without a usable Host. */
export function httpsLocation(host: string, target: string, port: number): string | undefined {
  // The host without its port: `[v6]:80` → `[v6]`, `example.com:80` → `example.com`.
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]\s/?#@]+)(?::\d*)?$/.exec(host);
  if (!m) return undefined;
  return `https://${m[1]!.toLowerCase()}${port === 443 ? "" : `:${port}`}${target === "*" ? "/" : target}`;
}

/** Answer `raw` with 308 to HTTPS on `port` (400 without a Host header to name the target). */
export function answerRedirect(raw: RawExchange, port: number): void {
  const location = httpsLocation(raw.host, raw.target, port);
  if (location === undefined) {
    const body = Buffer.from("a Host header is needed to redirect to https\n");
    return raw.respond(400, "Bad Request", TEXT, body, body.length);
  }
  const body = Buffer.from(`redirecting to ${location}\n`, "latin1");
  raw.respond(308, "Permanent Redirect", ["location", location, ...TEXT], raw.method === "HEAD" ? null : body, body.length);
}

/** The same for a web Request (runtimes without our own listener). */
export function redirectResponse(request: Request, port: number): Response {
  const url = new URL(request.url);
  const location = httpsLocation(request.headers.get("host") ?? "", url.pathname + url.search, port);
  if (location === undefined) return new Response("a Host header is needed to redirect to https\n", { status: 400 });
  return new Response(`redirecting to ${location}\n`, { status: 308, headers: { location, "content-type": TEXT[1]! } });
}

/** The ACME challenge answer for a web Request, or undefined. */
export function challengeResponse(request: Request, challenges: Challenges | undefined): Response | undefined {
  if (challenges === undefined || challenges.size === 0) return undefined;
  const body = challenges.answer(new URL(request.url).pathname);
  return body === undefined ? undefined : new Response(body, { headers: { "content-type": TEXT[1]! } });
}
