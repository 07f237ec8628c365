import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { closedPort } from "./helpers/backends.ts";
import { spawnFulcrum, type Child } from "./helpers/fulcrum.ts";
import { tempDir } from "./helpers/plugins.ts";

let child: Child | undefined;
afterAll(async () => {
  child?.kill("SIGTERM");
  await child?.exited;
});

test("fulcrum demo starts three backends and rotates requests across them", async () => {
  // The shipped demo config, moved to free ports so the test never collides with a running demo.
  const shipped = readFileSync(new URL("../config/demo.yaml", import.meta.url), "utf8");
  const ports = [closedPort(), closedPort(), closedPort()];
  let i = 0;
  const text = shipped
    .replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
    .replace(/127\.0\.0\.1:900\d/g, () => `127.0.0.1:${ports[i++]}`);
  expect(i).toBe(3);
  const file = tempDir("fulcrum-demo-").write("demo.yaml", text);
  child = await spawnFulcrum(["demo", "--config", file]);
  const seen: string[] = [];
  for (let n = 0; n < 6; n++) {
    const r = await fetch(child.url);
    expect(r.status).toBe(200);
    seen.push(r.headers.get("x-backend")!);
  }
  expect(seen).toEqual(["demo-1", "demo-2", "demo-3", "demo-1", "demo-2", "demo-3"]);
  // Printed after the listening line, so it may come a moment after the requests above.
  for (let i = 0; i < 500 && !child.lines.some((l) => l.includes("Try: curl -i")); i++) await new Promise((r) => setTimeout(r, 10));
  expect(child.lines.join("\n")).toContain("Try: curl -i");
});
