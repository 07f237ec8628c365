import { describe, expect, test } from "bun:test";
import { accessLine, accessLog, type AccessEntry, NO_IDS } from "../../core/telemetry/log.ts";
import { BatchingWriter } from "../../core/runtime/batching-writer.ts";

const entry = (over: Partial<AccessEntry> = {}): AccessEntry => ({
  method: "GET",
  path: '/a"b\u0001',
  status: 200,
  route: "*/ → web",
  pool: "web",
  backend: "127.0.0.1:9001",
  bytes: 100,
  attempts: 1,
  clientIp: "127.0.0.1",
  retryReason: undefined,
  error: undefined,
  ...over,
});
const T = Date.UTC(2026, 10, 26, 12, 0, 0, 5);

test("accessLine writes one JSON line with LogTape's envelope and the request's fields", () => {
  const line = accessLine(entry(), 1.23456, undefined, undefined, T);
  expect(line.endsWith("\n")).toBe(true);
  expect(line.indexOf("\n")).toBe(line.length - 1);
  expect(JSON.parse(line)).toEqual({
    "@timestamp": "2026-11-26T12:00:00.005Z",
    level: "INFO",
    message: "access",
    logger: "fulcrum.access",
    method: "GET",
    path: '/a"b\u0001',
    status: 200,
    route: "*/ → web",
    pool: "web",
    backend: "127.0.0.1:9001",
    duration_ms: 1.235,
    bytes: 100,
    attempts: 1,
    client_ip: "127.0.0.1",
  });
});

test("optional fields appear only when set; the worker number is added; the clock is followed", () => {
  const line = JSON.parse(
    accessLine(entry({ retryReason: "503", error: 'x "y"' }), 2, { trace_id: "t1", span_id: "s1" }, 3, Date.UTC(2027, 0, 1)),
  );
  expect(line).toMatchObject({ retry_reason: "503", error: 'x "y"', trace_id: "t1", span_id: "s1", worker: 3 });
  expect(line["@timestamp"]).toBe("2027-01-01T00:00:00.000Z");
  expect(Object.keys(JSON.parse(accessLine(entry(), 1, undefined)))).not.toContain("error");
});

test("a log file gets its lines in batches (not one write per line), all of them by close()", async () => {
  const { bunRuntime } = await import("../../core/runtime/bun.ts");
  const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "fulcrum-log-"));
  try {
    const path = join(dir, "access.log");
    const w = bunRuntime.openWriter({ path });
    for (let i = 0; i < 1000; i++) w.write(`line ${i}\n`);
    // Nothing written yet: the lines wait for the 50 ms timer (or 64 KiB), as one write.
    expect(readFileSync(path, "utf8")).toBe("");
    await w.close();
    const lines = readFileSync(path, "utf8").split("\n");
    expect(lines.length).toBe(1001);
    expect(lines[999]).toBe("line 999");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("the access log written as bytes", () => {
  /**
   * A writer whose writes are kept as they would reach the file. Like Bun's FileSink, the sink
   * holds what it is given until flush() and then sends it in one system call: `writes` are those.
   */
  const capture = (chunk?: number) => {
    const writes: Buffer[] = [];
    let pending: Buffer[] = [];
    const w = new BatchingWriter(
      {
        write: (b) => void pending.push(Buffer.from(b)),
        flush() {
          if (pending.length > 0) writes.push(Buffer.concat(pending));
          pending = [];
        },
        close: async () => {},
      },
      chunk,
    );
    return { w, writes, text: () => Buffer.concat(writes).toString("utf8") };
  };

  test("writes byte for byte what accessLine() writes, whatever the strings and numbers", () => {
    const strings = [
      "",
      "/",
      "/100b?x=1",
      'a"b\\c',
      "\u0001\u001f\u007f",
      "é→✓",
      "😀",
      "\ud800 lone",
      "x".repeat(300),
      "tab\there",
      "</script>",
    ];
    const durations = [
      0,
      0.0004,
      0.0005,
      0.0015,
      0.01,
      0.1,
      1,
      1.23456,
      12.5,
      999.9995,
      1234567.891,
      86_400_000.001,
      -0,
      -1.5,
      1e16,
      Number.NaN,
    ];
    const numbers = [0, 1, 9, 10, 99, 100, 65535, 1048576, 2 ** 53 - 1, 2 ** 53, -1, 1.5];
    let seed = 7;
    const seen = new Set<number>();
    const pick = <T>(xs: T[]) => {
      // xorshift32: every value of every list comes up.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return xs[(seed >>> 0) % xs.length]!;
    };
    let clock = Date.UTC(2026, 10, 27, 6, 0, 0, 0);
    const { w, text } = capture();
    let expected = "";
    for (let i = 0; i < 3000; i++) {
      const e = entry({
        method: pick(["GET", "POST", "_OTHER", ...strings]),
        path: pick(strings),
        status: pick([200, 404, 499, 502, ...numbers]),
        route: pick(strings),
        pool: pick(strings),
        backend: pick(strings),
        bytes: pick(numbers),
        attempts: pick(numbers),
        clientIp: pick(["127.0.0.1", "::1", ...strings]),
        retryReason: pick([undefined, undefined, "503", ...strings]),
        error: pick([undefined, undefined, 'connect: refused "x"', ...strings]),
      });
      const ms = pick(durations);
      seen.add(ms);
      const ids = pick([undefined, { trace_id: "0af7651916cd43dd8448eb211c80319c", span_id: "b7ad6b7169203331" }]);
      const worker = pick([undefined, 0, 1, 12]);
      clock += pick([0, 0, 1, 999]);
      const now = clock;
      accessLog(w, worker, () => now).write(e, ms, ids);
      expected += accessLine(e, ms, ids, worker, now);
    }
    w.flush();
    expect(text()).toBe(expected);
    expect(seen.size).toBe(new Set(durations).size);
  });

  test("lines that share a backend with more routes, pools and statuses than it keeps made-up bytes for", () => {
    // The bytes from status to backend are kept per backend for its last few combinations: every
    // combination comes back after others pushed it out, and some come back while still kept.
    const { w, text } = capture();
    const log = accessLog(w, undefined, () => T);
    let expected = "";
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) {
        const e = entry({
          backend: ["b1", "b2", "127.0.0.1:9001"][i % 3]!,
          route: `route ${i % 10} → web`,
          pool: i % 4 === 0 ? "other" : "web",
          // The same status as a string of another object, and a number that is not a status.
          status: [200, 502, 404, 1.5][i % 4]!,
        });
        log.write(e, i, undefined);
        expected += accessLine(e, i, undefined, undefined, T);
        // At once again (the kept bytes), and with one of the four changed (not them).
        if (i % 5 === 0) {
          for (const again of [e, { ...e, pool: "elsewhere" }, { ...e, route: "r" }, { ...e, status: 201 }, { ...e, backend: "b9" }]) {
            log.write(again, 1, undefined);
            expected += accessLine(again, 1, undefined, undefined, T);
          }
        }
      }
    }
    w.flush();
    expect(text()).toBe(expected);
    expect(expected.split("\n").length).toBe(3 * (40 + 8 * 5) + 1);
  });

  test("NO_IDS (a request with no trace ids) writes none, in the default line and with chosen fields", () => {
    const ids = { trace_id: "0af7651916cd43dd8448eb211c80319c", span_id: "b7ad6b7169203331" };
    for (const fields of [undefined, ["status", "trace_id", "span_id"] as const]) {
      const { w, text } = capture();
      const log = accessLog(w, undefined, () => T, { fields });
      for (const x of [NO_IDS, ids, NO_IDS, undefined]) log.write(entry(), 1, x);
      w.flush();
      const lines = text().trimEnd().split("\n").map((l) => JSON.parse(l));
      expect(lines.map((l) => l.trace_id)).toEqual([undefined, ids.trace_id, undefined, undefined]);
      expect(lines.map((l) => l.span_id)).toEqual([undefined, ids.span_id, undefined, undefined]);
    }
    expect(accessLine(entry(), 1, NO_IDS, undefined, T)).toBe(accessLine(entry(), 1, undefined, undefined, T));
  });

  test("the timestamp's milliseconds and seconds as the clock moves, back and forth", () => {
    const { w, text } = capture();
    let expected = "";
    let now = Date.UTC(2026, 11, 31, 23, 59, 59, 990);
    const log = accessLog(w, undefined, () => now);
    for (const step of [0, 1, 3, 5, 1, 0, 7, 1000, -1000, -1, 1, 999, 1, 86_400_000, 0.5, 0.5, 1, -0.5, 10.25]) {
      now += step;
      log.write(entry(), 1, undefined);
      expected += accessLine(entry(), 1, undefined, undefined, now);
    }
    w.flush();
    expect(text()).toBe(expected);
    expect(expected).toContain('"@timestamp":"2027-01-01T00:00:00.000Z"');
  });

  test("writes to a shared pipe are whole lines of at most 4 KiB, in order; a longer line goes alone", () => {
    const { w, writes, text } = capture(4096);
    const log = accessLog(w, 1, () => T);
    let expected = "";
    for (let i = 0; i < 200; i++) {
      const e = entry({ path: `/p${i}${i % 50 === 7 ? "x".repeat(5000) : ""}` });
      log.write(e, i, undefined);
      expected += accessLine(e, i, undefined, 1, T);
      if (i % 10 === 3) {
        w.write(`operational ${i}\n`);
        expected += `operational ${i}\n`;
      }
    }
    w.flush();
    expect(text()).toBe(expected);
    for (const b of writes) {
      expect(b.at(-1)).toBe(10);
      if (b.length > 4096) expect(b.indexOf(10)).toBe(b.length - 1);
    }
    expect(writes.filter((b) => b.length > 4096).length).toBe(4);
  });

  test("a line too long for the whole buffer goes alone too, after the lines before it", () => {
    const { w, writes, text } = capture(4096);
    w.write("one\n");
    w.write("two\n");
    const huge = `${"h".repeat(200_000)}\n`;
    w.write(huge);
    w.write("three\n");
    w.flush();
    expect(writes.map((b) => b.toString())).toEqual(["one\ntwo\n", huge, "three\n"]);
    expect(text()).toBe(`one\ntwo\n${huge}three\n`);
  });

  test("the timestamp is the clock's, whatever its year or value (as accessLine writes it)", () => {
    const { w, text } = capture();
    let expected = "";
    for (const now of [-1, 0, Date.UTC(10000, 0, 1), Date.UTC(-1, 0, 1), Date.UTC(2026, 10, 27)]) {
      accessLog(w, undefined, () => now).write(entry(), 1, undefined);
      expected += accessLine(entry(), 1, undefined, undefined, now);
    }
    w.flush();
    expect(text()).toBe(expected);
    expect(expected).toContain('"@timestamp":"+010000-01-01T00:00:00.000Z"');
    expect(expected).toContain('"@timestamp":"1969-12-31T23:59:59.999Z"');
  });

  test("lines wait for the next flush (timer, chunk or close), then leave in one write", async () => {
    const { w, writes } = capture();
    const log = accessLog(w, undefined, () => T);
    for (let i = 0; i < 100; i++) log.write(entry(), 1, undefined);
    expect(writes.length).toBe(0);
    await w.close();
    expect(writes.length).toBe(1);
    expect(writes[0]!.toString().split("\n").length).toBe(101);
    // Closed: later lines are dropped rather than written to a closed file.
    log.write(entry(), 1, undefined);
    w.flush();
    expect(writes.length).toBe(1);
  });
});
