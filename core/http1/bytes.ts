/**
 * Writing an HTTP/1.1 head as bytes into a buffer, without building it as a string first (the
 * pieces of a string head are a rope that is flattened and then copied again into the buffer).
 * Header names and values are latin1 strings: one byte per character, as they were read.
 */
import { Buffer } from "node:buffer";

/** `s` as latin1 (each character's low byte) at `at`; returns the end. */
export function latin1(buf: Uint8Array, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) buf[at++] = s.charCodeAt(i);
  return at;
}

/** `bytes` at `at`; returns the end. A loop: for pieces this short the native copy costs more. */
export function put(buf: Uint8Array, at: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) buf[at++] = bytes[i]!;
  return at;
}

const digits = new Uint8Array(24);
/** A number as String(n) writes it at `at` (non-negative safe integers without making the string); returns the end. */
export function putInt(buf: Uint8Array, at: number, n: number): number {
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER && Math.floor(n) === n)) return latin1(buf, at, String(n));
  let d = 0;
  do {
    const q = Math.floor(n / 10);
    digits[d++] = 48 + (n - q * 10);
    n = q;
  } while (n > 0);
  while (d > 0) buf[at++] = digits[--d]!;
  return at;
}

const ascii = (s: string) => new TextEncoder().encode(s);
/** Header lines both the listener and the upstream client write. */
export const CONTENT_LENGTH = ascii("content-length: ");
export const TE_CHUNKED = ascii("transfer-encoding: chunked\r\n");
export const CONNECTION_CLOSE = ascii("connection: close\r\n");

/**
 * Header lines forwarded as the backend sent them, names in its case: `runs` holds [start, end)
 * byte offsets of `buf`, in pairs, each run whole lines with their CRLF. Copying them costs one
 * native copy a run, where strings cost a string per value in the parser and a copy per
 * character when written back (bun-listener.ts).
 */
export interface HeaderBlock {
  readonly buf: Buffer;
  readonly runs: readonly number[];
  /** The bytes of all runs. */
  readonly size: number;
  /** One of the lines is a Date header (the listener adds one otherwise). */
  readonly hasDate: boolean;
}

/**
 * Close the run of forwarded lines open since `start` (-1: none open) at `end`, where a dropped
 * line begins or the head ends; returns -1, the new `start`. The parsers build HeaderBlock runs so.
 */
export function endRun(runs: number[], start: number, end: number): number {
  if (start >= 0) runs.push(start, end);
  return -1;
}

/** The bytes in `runs` (HeaderBlock.size). */
export function runsSize(runs: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < runs.length; i += 2) n += runs[i + 1]! - runs[i]!;
  return n;
}

/** The lines of `block` at `at`; returns the end. */
export function putBlock(buf: Buffer, at: number, block: HeaderBlock): number {
  const runs = block.runs;
  for (let i = 0; i < runs.length; i += 2) at += block.buf.copy(buf, at, runs[i], runs[i + 1]);
  return at;
}

/**
 * `buf[start, end)` as a decimal (a Content-Length) of at most 15 digits after any leading zeros
 * (`005` is 5, as llhttp and nginx read it), or -1 if it is not one.
 */
export function decimal(buf: Uint8Array, start: number, end: number): number {
  if (end <= start) return -1;
  while (end - start > 1 && buf[start] === 48) start++;
  if (end - start > 15) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * A copy of a head's bytes `buf[from, end)`, with `runs` moved to it; for a head that should not
 * hold the larger read it came in. `allocUnsafe` and `copy`, not `slice`, which makes its Buffer
 * through the species constructor: 137 against 66 ns for a 250-byte head (7% of the JS samples of
 * a 16 KiB GET, where every response head is detached).
 */
export function ownCopy(buf: Buffer, from: number, end: number, runs: number[] | undefined): Buffer {
  if (runs !== undefined) { for (let i = 0; i < runs.length; i++) runs[i]! -= from; }
  const out = Buffer.allocUnsafe(end - from);
  buf.copy(out, 0, from, end);
  return out;
}

/**
 * A response body still in the read it came in, `buf[at, end)`, with the backend's head before it:
 * the upstream client (core/upstream/raw-response.ts) reads a response whole in one read and hands
 * it over so, with no view of it made (a view makes JSC give the read an ArrayBuffer of its own:
 * ~0.25 µs, whatever its size); the listener (core/listener/exchange.ts, `respondInRead`) writes the
 * client's head into the bytes where the backend's head was and sends head and body from there.
 */
export interface BodyInRead {
  readonly buf: Buffer;
  readonly at: number;
  readonly end: number;
  /** The bytes before `at` (the backend's head) were written over: reading the head from them now throws. */
  spend?(): void;
}
