/** Running many cases through judge.ts a few at a time, and the report of what was found. */
import type { Buffer } from "node:buffer";
import { encode } from "./corpus.ts";
import type { Judgement } from "./judge.ts";
import { NodeOracle } from "./oracle.ts";
import { STRICTER } from "./stricter.ts";
import { ThroughFulcrum } from "./through-fulcrum.ts";

export interface Sides {
  oracle: NodeOracle;
  fulcrum: ThroughFulcrum;
  stop(): Promise<void>;
}

/** Node's server and `slots` Fulcrums with their backends. */
export async function startSides(slots: number): Promise<Sides> {
  const [oracle, fulcrum] = await Promise.all([NodeOracle.start(), ThroughFulcrum.start(slots)]);
  return {
    oracle,
    fulcrum,
    async stop() {
      await fulcrum.stop();
      await oracle.stop();
    },
  };
}

/** `f` over `items`, at most `limit` at a time, results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, f: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export interface Tally {
  cases: number;
  /** Both accepted at least one request and agreed. */
  forwarded: number;
  /** Both refused (or saw nothing whole) from the first request. */
  bothRefused: number;
  /** Fulcrum refused what Node accepted, for a listed reason: count by rule (`#n message`, n from 1 in stricter.ts). */
  stricter: Map<string, number>;
  /** Cases with a method llhttp does not know. */
  extensionMethods: number;
  failed: number;
}

export function tally(judgements: readonly Judgement[]): Tally {
  const t: Tally = { cases: judgements.length, forwarded: 0, bothRefused: 0, stricter: new Map(), extensionMethods: 0, failed: 0 };
  for (const j of judgements) {
    if (j.problems.length > 0) t.failed++;
    else if (j.stricter !== undefined) {
      const key = `#${STRICTER.indexOf(j.stricter) + 1} ${j.stricter.message.source.replace(/^\^|\$$/g, "")}`;
      t.stricter.set(key, (t.stricter.get(key) ?? 0) + 1);
    } else if (j.through.forwarded.length > 0) t.forwarded++;
    else t.bothRefused++;
    if (j.extensionMethods > 0) t.extensionMethods++;
  }
  return t;
}

export function summary(t: Tally): string {
  const stricter = [...t.stricter].sort(([a], [b]) => parseInt(a.slice(1)) - parseInt(b.slice(1))).map(([m, n]) => `${n} × ${m}`).join(
    ", ",
  );
  return `${t.cases} cases: ${t.forwarded} forwarded alike, ${t.bothRefused} refused by both, ` +
    `${[...t.stricter.values()].reduce((a, b) => a + b, 0)} refused by Fulcrum only for a listed reason${
      stricter ? ` (${stricter})` : ""
    }, ` +
    `${t.extensionMethods} with a method llhttp does not know, ${t.failed} failed`;
}

/** A failed case as a reader needs it: what, why, Node's view, Fulcrum's view, and the bytes to replay. */
export function report(title: string, bytes: Buffer, j: Judgement): string {
  const node = `Node: ${j.accepted.length} accepted, error ${j.node.error ?? "none"}; messages ${
    JSON.stringify(j.node.messages.map((m) => `${m.method} ${m.url} complete=${m.complete} delivered=${m.delivered}`))
  }`;
  const fulcrum = `Fulcrum: forwarded ${
    JSON.stringify(j.through.forwarded.map((f) => `${f.method} ${f.target} (${f.body.length} B)`))
  }, answered ${JSON.stringify(j.through.answers.map((a) => `${a.status} ${a.body.slice(0, 60)}`))}${
    j.through.closed ? ", closed" : ""
  }; its parser: ${j.model.requests.length} then ${j.model.end}${
    j.model.error ? ` (${j.model.error.status} ${j.model.error.message})` : ""
  }`;
  return `✗ ${title}\n  ${j.problems.join("\n  ")}\n  ${node}\n  ${fulcrum}\n  bytes:\n\`\`\`http\n${encode(bytes)}\`\`\``;
}
