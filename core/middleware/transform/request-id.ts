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
let prefixMs = -1;
let prefix = "";

/**
 * A UUIDv7: 48 bits of Unix milliseconds, version 7, then the random bits and RFC 9562 variant
 * of the runtime's native v4 UUID (`xxxxxxxx-xxxx-4xxx-Vxxx-…`: its characters from the 16th are
 * 12 random bits, the variant and 62 random bits, exactly v7's layout after the version).
 */
export function uuidv7(now = Date.now()): string {
  if (now !== prefixMs) {
    prefixMs = now;
    const t = now.toString(16).padStart(12, "0");
    prefix = `${t.slice(0, 8)}-${t.slice(8, 12)}-7`;
  }
  return prefix + crypto.randomUUID().slice(15);
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
