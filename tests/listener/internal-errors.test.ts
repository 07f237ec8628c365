// An error thrown by the request handler behind the runtime's own listener is a bug: the request
// gets a 500, the listener goes on serving, and the error reaches `onError` (which core/proxy/
// server.ts logs, throttled by core/lib/throttle.ts).
import { expect, test } from "bun:test";
import { bunRuntime } from "../../core/runtime/bun.ts";
import { throttle } from "../../core/lib/throttle.ts";

test("a handler that throws: 500 for that request, onError told, the next request served", async () => {
  const errors: unknown[] = [];
  let calls = 0;
  const listener = await bunRuntime.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response("unused"),
    raw: (ex) => {
      if (calls++ === 0) throw new Error("a bug");
      ex.respond(200, "", ["content-type", "text/plain"], Buffer.from("ok"), 2);
    },
    maxRequestBodySize: 1024,
    idleTimeoutSeconds: 10,
    onError: (e) => errors.push(e),
  });
  try {
    const url = `http://127.0.0.1:${listener.port}/`;
    const first = await fetch(url);
    expect(first.status).toBe(500);
    expect(await first.text()).toBe("internal error\n");
    expect(errors.map((e) => (e as Error).message)).toEqual(["a bug"]);
    expect(await (await fetch(url)).text()).toBe("ok");
  } finally {
    await listener.forceClose();
  }
});

test("throttle: at most once per interval, told how many were dropped", () => {
  let now = 0;
  const seen: number[] = [];
  const t = throttle(10_000, () => now);
  for (const at of [0, 1, 9_999, 10_000, 10_001, 25_000]) {
    now = at;
    t((dropped) => seen.push(dropped));
  }
  expect(seen).toEqual([0, 2, 1]);
});
