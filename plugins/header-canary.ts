/**
 * Header canary: requests with `x-canary: 1` go to backends labelled `canary`, all others to the
 * rest. If one side has no available backend, its requests use the other side rather than fail.
 *
 *   pools:
 *     web:
 *       strategy: { plugin: ./plugins/header-canary.ts, options: { header: x-canary, value: "1" } }
 *       backends:
 *         - http://10.0.0.11:8000
 *         - { url: http://10.0.0.12:8000, labels: { canary: "true" } }
 */
import type { BackendView, StrategyPlugin } from "fulcrum";
import { rotation } from "./lib/rotation.ts";

interface Options {
  /** Request header that asks for the canary. @default "x-canary" */
  header?: string;
  /** Value of that header that selects the canary. @default "1" */
  value?: string;
  /** Backend label that marks a canary (any value but "false"). @default "canary" */
  label?: string;
}

export default {
  kind: "strategy",
  name: "header-canary",
  create(options: Options) {
    const header = (options.header ?? "x-canary").toLowerCase();
    const value = options.value ?? "1";
    const label = options.label ?? "canary";
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(header))
      throw new TypeError(`header must be a header name, got ${JSON.stringify(options.header)}`);
    if (typeof value !== "string") throw new TypeError(`value must be a string, got ${JSON.stringify(options.value)}`);

    let members: readonly BackendView[] | undefined;
    let canary: BackendView[] = [];
    let stable: BackendView[] = [];
    const pickCanary = rotation();
    const pickStable = rotation();
    const isCanary = (b: BackendView) => b.labels[label] !== undefined && b.labels[label] !== "false";

    function update(backends: readonly BackendView[]) {
      members = backends;
      canary = backends.filter(isCanary);
      stable = backends.filter((b) => !isCanary(b));
    }

    return {
      update,
      pick(backends, request) {
        if (backends !== members) update(backends);
        const wantsCanary = request.headers.get(header) === value;
        const first = wantsCanary ? canary : stable;
        return first.length
          ? (wantsCanary ? pickCanary : pickStable)(first)
          : (wantsCanary ? pickStable : pickCanary)(wantsCanary ? stable : canary);
      },
    };
  },
} satisfies StrategyPlugin<Options>;
