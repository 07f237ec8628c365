// The HTTP/2 abuse bounds on frames (core/http2/guard.ts), fed by hand: each bound trips exactly past its threshold, and legitimate traffic never does.
import { describe, expect, test } from "bun:test";
import { FrameGuard, GUARD } from "../../core/http2/guard.ts";
import {
  ACK,
  CONTINUATION,
  DATA,
  END_HEADERS,
  END_STREAM,
  frame,
  get,
  HEADERS,
  PING,
  PREFACE,
  rst,
  settings,
  WINDOW_UPDATE,
} from "../helpers/h2frames.ts";

const conn = (answered = 0) => ({ answered });
const guard = (answered = 0, maxHeaderList = 64 * 1024) => {
  const g = new FrameGuard(conn(answered), maxHeaderList);
  expect(g.feed(PREFACE)).toBeUndefined();
  return g;
};
/** Feeds `n` copies of `bytes`, one at a time; the 1-based copy that tripped the guard (0: none) and why. */
function until(g: FrameGuard, bytes: Buffer, n: number): { at: number; why: string | undefined } {
  for (let i = 1; i <= n; i++) {
    const why = g.feed(bytes);
    if (why !== undefined) return { at: i, why };
  }
  return { at: 0, why: undefined };
}

describe("FrameGuard", () => {
  test("rapid reset: past 100 resets, more than twice the streams answered closes the connection", () => {
    const g = guard(0);
    const r = until(g, Buffer.concat([get(1), rst(1)]), 1000);
    expect(r.at).toBe(GUARD.ratioAfter);
    expect(r.why).toContain("rapid reset");
    // A client that cancels some of what it asks for is fine.
    const c = { answered: 0 };
    const ok = new FrameGuard(c, 64 * 1024);
    ok.feed(PREFACE);
    for (let i = 0; i < GUARD.maxResets - 100; i++) {
      c.answered += 2;
      expect(ok.feed(Buffer.concat([get(2 * i + 1), rst(2 * i + 1)]))).toBeUndefined();
    }
  });

  test("rapid reset: more than 1000 resets in 10 s closes it whatever was answered", () => {
    const g = guard(1_000_000);
    expect(until(g, rst(1), 5000)).toMatchObject({ at: GUARD.maxResets + 1 });
  });

  test("CONTINUATION flood: a header block in more than 32 frames, or too large, closes it", () => {
    const g = guard();
    g.feed(frame(HEADERS, END_STREAM, 1, Buffer.alloc(10)));
    expect(until(g, frame(CONTINUATION, 0, 1, Buffer.alloc(1)), 100).at).toBe(GUARD.maxBlockFrames);
    const big = guard(0, 16 * 1024);
    big.feed(frame(HEADERS, 0, 1, Buffer.alloc(16 * 1024)));
    const r = until(big, frame(CONTINUATION, 0, 1, Buffer.alloc(16 * 1024)), 10);
    expect(r.at).toBe(3); // 64 KiB > 2 × 16 KiB + 16 KiB
    expect(r.why).toContain("header block of more than");
    // A 64 KiB header block in 16 KiB frames is legitimate.
    const ok = guard();
    expect(ok.feed(frame(HEADERS, 0, 1, Buffer.alloc(16 * 1024)))).toBeUndefined();
    for (let i = 0; i < 3; i++) expect(ok.feed(frame(CONTINUATION, 0, 1, Buffer.alloc(16 * 1024)))).toBeUndefined();
    expect(ok.feed(frame(CONTINUATION, END_HEADERS, 1, Buffer.alloc(100)))).toBeUndefined();
    expect(ok.feed(get(3))).toBeUndefined();
  });

  test("SETTINGS and PING floods: more than 1000 in 10 s closes it; ACKs do not count", () => {
    expect(until(guard(), ping(), 5000).at).toBe(GUARD.maxControl + 1);
    expect(until(guard(), settings([[4, 65535]]), 5000).at).toBe(GUARD.maxControl + 1);
    expect(until(guard(), frame(PING, ACK, 0, Buffer.alloc(8)), 5000).at).toBe(0);
  });

  test("empty frames: more than 100 empty DATA frames without END_STREAM close it", () => {
    expect(until(guard(), frame(DATA, 0, 1), 1000).at).toBe(GUARD.maxEmpty + 1);
    expect(until(guard(), frame(DATA, END_STREAM, 1), 1000).at).toBe(0);
  });

  test("frames split at any byte are read the same; stopAt is where the offending frame begins", () => {
    const g = guard(0);
    const stream = Buffer.concat(Array.from({ length: 150 }, (_, i) => Buffer.concat([get(2 * i + 1), rst(2 * i + 1)])));
    let why: string | undefined;
    let fed = 0;
    for (let at = 0; at < stream.length && why === undefined; at += 7) {
      const piece = stream.subarray(at, at + 7);
      why = g.feed(piece);
      if (why !== undefined) fed = at + g.stopAt;
    }
    expect(why).toContain("rapid reset");
    // The 100th RST_STREAM: 99 (HEADERS + RST) pairs and the 100th HEADERS come before it; a
    // frame header split across reads may have been passed on in part (at most 8 bytes of it).
    const pair = get(1).length + rst(1).length;
    const start = 99 * pair + get(1).length;
    expect(fed).toBeGreaterThanOrEqual(start);
    expect(fed - start).toBeLessThan(9);
  });

  test("WINDOW_UPDATE and SETTINGS from the client move its window clock", async () => {
    const g = guard();
    const before = g.windowMovedAt;
    await new Promise((r) => setTimeout(r, 5));
    g.feed(frame(WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 1, 0])));
    expect(g.windowMovedAt).toBeGreaterThan(before);
  });
});

function ping(): Buffer {
  return frame(PING, 0, 0, Buffer.alloc(8));
}
