/**
 * The value types config keys are written in (durations, sizes, ratios, counts, addresses, URLs),
 * each with its error message, shared by every part of the schema.
 */
import { z } from "zod";
import { parseDuration, parseListen, parseSize } from "./units.ts";

export const DURATION = "must be a duration like 250ms, 5s or 1m";
export const SIZE = "must be a size like 512kb or 10mb (0 for no limit)";

export const duration = z
  .string({ error: DURATION })
  .refine((s) => parseDuration(s) !== undefined, { error: DURATION })
  .transform((s) => parseDuration(s)!);

export const size = z
  .union([z.string(), z.number()], { error: SIZE })
  .refine((s) => parseSize(s) !== undefined, { error: SIZE })
  .transform((s) => parseSize(s)!);

export const positiveInt = (what = "must be a positive integer") =>
  z.number({ error: what }).int({ error: what }).positive({ error: what });

export const RATIO = "must be a percentage like 20% or a ratio like 0.2";
export const ratio = z
  .union([z.string(), z.number()], { error: RATIO })
  .transform((v) => (typeof v === "number" ? v : /^\d+(\.\d+)?%$/.test(v.trim()) ? Number(v.trim().slice(0, -1)) / 100 : NaN))
  .refine((v) => v >= 0 && v <= 1, { error: RATIO });

export const count = (what = "must be a whole number >= 0") => z.number({ error: what }).int({ error: what }).nonnegative({ error: what });

export const listen = z
  .union([z.string(), z.number()], { error: "must be host:port, :port or a port number" })
  .refine((s) => parseListen(s) !== undefined, { error: "must be host:port, :port or a port number (0-65535)" })
  .transform((s) => parseListen(s)!);

export function isRegExp(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

export function isHttpUrl(s: string): boolean {
  if (!/^https?:\/\//i.test(s)) return false;
  try {
    const u = new URL(s);
    return u.hostname !== "" && !u.search && !u.hash && !u.username;
  } catch {
    return false;
  }
}
