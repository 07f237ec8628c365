/**
 * The built-in `request-id` transform: each request gets an id, the client's `X-Request-Id`
 * when it sent a usable one (and `trust_incoming` is on), else a new UUIDv7 (RFC 9562: time
 * ordered, so ids sort by arrival). The backend gets it in the header, the client gets it back,
 * and the access log (`request_id`) and the span (`fulcrum.request_id`) record it.
 *
 *   middleware:
 *     - request-id: { header: x-request-id, trust_incoming: true }
 */
import type { MiddlewarePlugin, Transform } from "../../plugins/api.ts";
import { headerName, knownKeys, mapOption } from "./template.ts";

export interface RequestIdOptions {
  /** @default "x-request-id" */
  header?: string;
  /** Keep an id the client sent (1–200 visible ASCII characters); false: always a new one. @default true */
  trust_incoming?: boolean;
}

const USABLE = /^[\x21-\x7e]{1,200}$/;
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
// Random bytes drawn in batches: one getRandomValues call per 256 ids.
const pool = new Uint8Array(10 * 256);
let used = pool.length;

/** A UUIDv7: 48 bits of Unix milliseconds, version 7, 74 random bits, variant 10. */
export function uuidv7(now = Date.now()): string {
  if (used + 10 > pool.length) {
    crypto.getRandomValues(pool);
    used = 0;
  }
  const r = used;
  used += 10;
  const t = now.toString(16).padStart(12, "0");
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${HEX[pool[r]!]!.slice(1)}${HEX[pool[r + 1]!]}-` +
    `${HEX[(pool[r + 2]! & 0x3f) | 0x80]}${HEX[pool[r + 3]!]}-` +
    `${HEX[pool[r + 4]!]}${HEX[pool[r + 5]!]}${HEX[pool[r + 6]!]}${HEX[pool[r + 7]!]}${HEX[pool[r + 8]!]}${HEX[pool[r + 9]!]}`;
}

export function createRequestId(options: RequestIdOptions): Transform {
  const o = mapOption(options, "request-id");
  knownKeys(o, ["header", "trust_incoming"]);
  const header = headerName(o.header ?? "x-request-id", "header");
  const trust = o.trust_incoming ?? true;
  if (typeof trust !== "boolean") throw new TypeError(`trust_incoming must be true or false, got ${JSON.stringify(trust)}`);
  return {
    request(req) {
      const sent = trust ? req.header(header) : undefined;
      const id = sent !== undefined && USABLE.test(sent) ? sent : uuidv7();
      req.requestId = id;
      req.setHeader(header, id);
    },
    response(res, req) {
      if (req.requestId !== undefined) res.setHeader(header, req.requestId);
    },
  };
}

export default {
  kind: "middleware",
  name: "request-id",
  create: (options) => createRequestId(options),
} satisfies MiddlewarePlugin<RequestIdOptions>;
