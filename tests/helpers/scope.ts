/** Per-test resources that are stopped after each test, however it ended. */
import { afterEach } from "bun:test";
import { startBackend, startBackends, type TestBackend } from "./backends.ts";
import { startFulcrum, type InProcess } from "./fulcrum.ts";

export function testScope() {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  return {
    /** Run on cleanup, last added first. */
    cleanups,
    backend(name: string, handler?: Parameters<typeof startBackend>[1]): TestBackend {
      const b = startBackend(name, handler);
      cleanups.push(() => b.stop());
      return b;
    },
    backends(n: number): TestBackend[] {
      const bs = startBackends(n);
      for (const b of bs) cleanups.push(() => b.stop());
      return bs;
    },
    async fulcrum(yaml: string, opts?: Parameters<typeof startFulcrum>[1]): Promise<InProcess> {
      const f = await startFulcrum(yaml, opts);
      cleanups.push(() => f.stop());
      return f;
    },
  };
}
