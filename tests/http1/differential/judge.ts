/**
 * One case through both parsers, and the verdict on the difference. The rules:
 *
 * - Fulcrum never forwards a request Node's server (llhttp, strict) did not parse and hand to
 *   its application: not one it refused, not one it did not see the end of, not one after it.
 * - For the requests both accept, Fulcrum forwards the same number, with the same method, target
 *   (as Fulcrum rewrites it: absolute form to origin form, dot segments resolved), body, Host and
 *   header fields (apart from those a proxy owns: hop-by-hop, Host, X-Forwarded-*, framing; Cookie
 *   lines joined with "; ").
 * - Fulcrum may refuse what llhttp accepts only for a reason listed in stricter.ts.
 * - A method llhttp does not know (it has a fixed list; Fulcrum forwards any token, RFC 9110
 *   §9.1, as nginx and HAProxy do) is not a framing difference: the request is sent to Node again
 *   with the method replaced by PUT, and the rest of the case is compared on that.
 * - The backend could parse everything Fulcrum forwarded, and Fulcrum forwarded what its own
 *   parser (model.ts) says it would.
 */
import { Buffer } from "node:buffer";
import { HOP_BY_HOP } from "../../../core/http1/headers.ts";
import { normalizeTarget } from "../../../core/http1/target.ts";
import { fulcrumModel, type ModelVerdict } from "./model.ts";
import type { NodeMessage, NodeOracle, NodeVerdict } from "./oracle.ts";
import { stricterRule, type StricterRule } from "./stricter.ts";
import { type Answer, type Forwarded, MAX_BODY, type Through, type ThroughFulcrum } from "./through-fulcrum.ts";

export interface Judgement {
  /** Node's verdict, after method substitutions. */
  node: NodeVerdict;
  /** The requests Node accepted (parsed whole and delivered), in order. */
  accepted: NodeMessage[];
  model: ModelVerdict;
  through: Through;
  /** Requests whose method llhttp does not know, by index: Fulcrum forwarded them (see above). */
  extensionMethods: number;
  /** Fulcrum refused a request Node accepted, for this listed reason. */
  stricter?: StricterRule;
  /** What is wrong; empty when the case passes. */
  problems: string[];
}

/** The requests Node parsed whole and handed to its application, up to the first it did not. */
export function acceptedOf(v: NodeVerdict): NodeMessage[] {
  const out: NodeMessage[] = [];
  for (const m of v.messages) {
    if (!m.complete || !m.delivered) break;
    out.push(m);
  }
  return out;
}

/** The target as Fulcrum forwards it: origin form, dot segments resolved. */
function asForwarded(url: string): string {
  const abs = /^https?:\/\/[^/?#]*([^#]*)$/i.exec(url);
  let t = abs ? abs[1]! : url;
  if (abs) t = t === "" ? "/" : t.startsWith("/") ? t : `/${t}`;
  try {
    return t === "*" ? t : normalizeTarget(t);
  } catch {
    return t;
  }
}

const OWNED = new Set(["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "content-length", "transfer-encoding"]);

/**
 * Header fields as a proxy passes them on: lines of one name joined (", "; Cookie "; "), as
 * `name: value` lines sorted; the fields a proxy owns and the hop-by-hop ones left out.
 */
function fields(pairs: [string, string][], connection: boolean): string[] {
  const named = new Set(
    connection
      ? pairs.filter(([n]) => n === "connection").flatMap(([, v]) => v.split(",").map((t) => t.trim().toLowerCase()))
        // Fulcrum drops the fields named in Connection but `close` and `keep-alive` (headers.ts).
        .filter((t) => t !== "close" && t !== "keep-alive")
      : [],
  );
  const joined = new Map<string, string>();
  for (const [n, v] of pairs) {
    if (OWNED.has(n) || HOP_BY_HOP.has(n) || named.has(n)) continue;
    const prev = joined.get(n);
    joined.set(n, prev === undefined ? v : `${prev}${n === "cookie" ? "; " : ", "}${v}`);
  }
  return [...joined].map(([n, v]) => `${n}: ${v.replace(/^[ \t]+|[ \t]+$/g, "")}`).sort();
}

function fieldsOfNode(m: NodeMessage): string[] {
  const pairs: [string, string][] = [];
  for (let i = 0; i < m.headers.length; i += 2) pairs.push([m.headers[i]!.toLowerCase(), m.headers[i + 1]!]);
  return fields(pairs, true);
}

const fieldsOfForwarded = (f: Forwarded): string[] => fields(f.headers, false);

function hostOf(m: NodeMessage): string | undefined {
  const abs = /^https?:\/\/([^/?#]*)/i.exec(m.url ?? "");
  if (abs) return abs[1]!;
  for (let i = 0; i < m.headers.length; i += 2) if (m.headers[i]!.toLowerCase() === "host") return m.headers[i + 1]!;
  return undefined;
}

const show = (b: Buffer) => JSON.stringify(b.toString("latin1").slice(0, 80));

export async function judge(bytes: Buffer, oracle: NodeOracle, fulcrum: ThroughFulcrum): Promise<Judgement> {
  const model = fulcrumModel(bytes, MAX_BODY);
  const [first, through] = await Promise.all([
    oracle.verdict(bytes),
    fulcrum.send(bytes, {
      requests: model.requests.length,
      methods: model.requests.map((r) => r.method),
      waits: model.end === "incomplete",
    }),
  ]);
  const R = model.requests;
  const F = through.forwarded;
  const problems: string[] = [];
  // Which of the requests Fulcrum read it forwarded, and which it answered itself (in order: one
  // answer a request). `forwardedAs[i]` is the backend's record of request i.
  const forwardedAs: (Forwarded | undefined)[] = [];
  const ownAnswer: (Answer | undefined)[] = [];
  let fi = 0;
  for (let i = 0; i < R.length; i++) {
    const a = through.answers[i];
    if (a !== undefined && !a.fromBackend) ownAnswer[i] = a;
    else forwardedAs[i] = F[fi++];
  }
  if (fi !== F.length || R.some((r, i) => forwardedAs[i] !== undefined && !r.body.equals(forwardedAs[i]!.body))) {
    problems.push(`Fulcrum's parser (model.ts) says ${R.length} request(s) (${model.end}), the proxy forwarded ${F.length}`);
  }

  // A method llhttp does not know, in the first request Node did not accept: again, as PUT. Where
  // it starts is known from Fulcrum's parser; the bytes before it are the same.
  let node = first;
  let nodeBytes = bytes;
  let shift = 0;
  const substituted = new Set<number>();
  for (let round = 0; round < 8; round++) {
    const k = acceptedOf(node).length;
    const m = R[k];
    if (m === undefined || oracle.methods.has(m.method)) break;
    const start = m.start + shift;
    if (nodeBytes.toString("latin1", start, start + m.method.length) !== m.method) break;
    nodeBytes = Buffer.concat([nodeBytes.subarray(0, start), Buffer.from("PUT"), nodeBytes.subarray(start + m.method.length)]);
    shift += 3 - m.method.length;
    substituted.add(k);
    node = await oracle.verdict(nodeBytes);
  }
  const accepted = acceptedOf(node);
  const j: Judgement = { node, accepted, model, through, extensionMethods: substituted.size, problems };
  const stricter = (reason: string, at: number) => {
    const rest = bytes.toString("latin1", at, Math.min(bytes.length, at + 8192));
    const rule = stricterRule(reason, rest.split(/[\r\n]/)[0]!, rest);
    if (rule !== undefined) j.stricter = rule;
    else problems.push(`Fulcrum refused a request Node accepted, for a reason not listed as stricter than llhttp: ${reason}`);
  };

  if (through.timedOut) problems.push("Fulcrum did not settle (no close, no quiet) within the bound");
  for (const e of through.backendErrors) problems.push(`the backend could not parse what Fulcrum forwarded: ${e}`);
  for (let i = 0; i < Math.max(R.length, accepted.length); i++) {
    const f = forwardedAs[i], a = accepted[i], n = i + 1;
    if (i >= R.length) {
      // Fulcrum stopped before this request: its parser says why (a refusal of it, or the request
      // before closed the connection).
      if (model.error) stricter(`${model.error.status} ${model.error.message}`, model.error.at);
      else stricter(`connection ${model.end}`, R[R.length - 1]?.start ?? 0);
      break;
    }
    if (a === undefined) {
      if (f !== undefined) {
        const why = node.error ?? (node.messages[i] ? "parsed but not delivered whole" : "not parsed at all");
        problems.push(`Fulcrum forwarded request ${n} (${f.method} ${f.target}) where Node accepted ${accepted.length} (Node: ${why})`);
      }
      continue;
    }
    if (f === undefined) {
      const own = ownAnswer[i];
      stricter(own ? `${own.status} ${own.body}` : "not forwarded", R[i]!.start);
      continue;
    }
    const method = substituted.has(i) ? "PUT" : f.method;
    if (method !== a.method) problems.push(`request ${n}: method ${f.method}, Node parsed ${a.method}`);
    if (f.target !== asForwarded(a.url ?? "")) problems.push(`request ${n}: target ${f.target}, Node parsed ${a.url}`);
    if (!f.body.equals(a.body)) problems.push(`request ${n}: body ${show(f.body)}, Node parsed ${show(a.body)}`);
    const host = f.headers.find(([h]) => h === "host")?.[1] ?? "";
    const expected = hostOf(a);
    if (host === "") problems.push(`request ${n}: forwarded with an empty Host`);
    else if (expected !== undefined && expected !== "" && host !== expected)
      problems.push(`request ${n}: Host ${host}, Node parsed ${expected}`);
    const fields = fieldsOfForwarded(f), expectedFields = fieldsOfNode(a);
    if (fields.join("\n") !== expectedFields.join("\n"))
      problems.push(`request ${n}: header fields ${JSON.stringify(fields)}, Node parsed ${JSON.stringify(expectedFields)}`);
  }
  return j;
}
