import type { BackendView } from "fulcrum";

/** Round robin over a fixed list: a counter and a modulo, no allocation per pick. */
export function rotation(): (list: readonly BackendView[]) => BackendView | undefined {
  let next = 0;
  return (list) => {
    if (list.length === 0) return undefined;
    if (next >= list.length) next = 0;
    return list[next++];
  };
}
