import { expect, test } from "bun:test";
import type { LogRecord } from "@logtape/logtape";
import { accessFormat } from "../core/log.ts";

function record(properties: Record<string, unknown>, timestamp = Date.UTC(2026, 10, 26, 12, 0, 0, 5)): LogRecord {
  return { category: ["fulcrum", "access"], level: "info", message: ["access"], rawMessage: "access", properties, timestamp } as LogRecord;
}

test("accessFormat writes one JSON line with LogTape's field names and the request's fields", () => {
  const line = accessFormat(record({ method: "GET", path: "/a\"b", status: 200, duration_ms: 1.5, trace_id: "abc" }));
  expect(line.endsWith("\n")).toBe(true);
  expect(line.indexOf("\n")).toBe(line.length - 1);
  expect(JSON.parse(line)).toEqual({
    "@timestamp": "2026-11-26T12:00:00.005Z",
    level: "INFO",
    message: "access",
    logger: "fulcrum.access",
    method: "GET",
    path: '/a"b',
    status: 200,
    duration_ms: 1.5,
    trace_id: "abc",
  });
});

test("accessFormat stays valid JSON with no properties and follows the clock", () => {
  expect(JSON.parse(accessFormat(record({}))).logger).toBe("fulcrum.access");
  expect(JSON.parse(accessFormat(record({ a: 1 }, Date.UTC(2027, 0, 1))))["@timestamp"]).toBe("2027-01-01T00:00:00.000Z");
});
