/** The built-in transforms, in the order `fulcrum types` and the docs list them. */
import type { MiddlewarePlugin } from "../../plugins/api.ts";
import { redirect, respond } from "./answer.ts";
import headers from "./headers.ts";
import requestId from "./request-id.ts";
import rewrite from "./rewrite.ts";
import stripPrefix from "./strip-prefix.ts";

export const TRANSFORMS: readonly MiddlewarePlugin<never>[] = [
  stripPrefix,
  rewrite,
  headers,
  requestId,
  redirect,
  respond,
] as MiddlewarePlugin<never>[];
