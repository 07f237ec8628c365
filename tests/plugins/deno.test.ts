// Deno resolves "fulcrum" through the import map in deno.json; a plugin importing its values loads.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT, tempDir } from "../helpers/plugins.ts";

test('deno run main.ts check loads a strategy and a middleware plugin that import from "fulcrum"', async () => {
  const t = tempDir();
  t.write("lib/pick.ts", "export const first = (bs: readonly unknown[]) => bs[0];\n");
  t.write(
    "s.ts",
    `import { version, type StrategyPlugin } from "fulcrum";\nimport { first } from "./lib/pick.ts";\n` +
      `export default { kind: "strategy", name: "s-" + version, create: () => ({ pick: first }) } satisfies StrategyPlugin;\n`,
  );
  t.write(
    "m.ts",
    `import { HTTPException, type MiddlewarePlugin } from "fulcrum";\n` +
      `export default { kind: "middleware", name: "m", create: () => async (c, next) => { if (!HTTPException) throw new Error("no host module"); await next(); } } satisfies MiddlewarePlugin;\n`,
  );
  const cfg = t.write(
    "f.yaml",
    "pools:\n  web: { strategy: { plugin: ./s.ts }, backends: [http://127.0.0.1:9] }\nroutes:\n  - { pool: web, middleware: [ { plugin: ./m.ts } ] }\n",
  );
  const proc = Bun.spawn([join(ROOT, "node_modules/.bin/deno"), "run", "-A", "main.ts", "check", "--config", cfg], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(err).not.toContain("problem");
  expect(code).toBe(0);
  expect(out).toMatch(/pool web: strategy s-\d+\.\d+\.\d+ \(plugin \.\/s\.ts\)/);
});
