import { expect, test } from "bun:test";
import { accessLine, type AccessEntry } from "../core/log.ts";

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
  const line = JSON.parse(accessLine(entry({ retryReason: "503", error: 'x "y"' }), 2, { trace_id: "t1", span_id: "s1" }, 3, Date.UTC(2027, 0, 1)));
  expect(line).toMatchObject({ retry_reason: "503", error: 'x "y"', trace_id: "t1", span_id: "s1", worker: 3 });
  expect(line["@timestamp"]).toBe("2027-01-01T00:00:00.000Z");
  expect(Object.keys(JSON.parse(accessLine(entry(), 1, undefined)))).not.toContain("error");
});

test("a log file gets its lines in batches (not one write per line), all of them by close()", async () => {
  const { bunRuntime } = await import("../core/runtime/bun.ts");
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
