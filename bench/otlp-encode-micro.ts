// What encoding the request path's spans costs, in process: a SERVER and a CLIENT span with the
// attributes Fulcrum sets, encoded as the protobuf batch processor does (each span as it ends,
// EncodedSpans.add, then the request per 512 spans, buffers reused).
//   bun bench/otlp-encode-micro.ts
// Several rounds: the first ones include JIT warm-up; compare the last ones, on a quiet machine.
import { ROOT_CONTEXT, SpanKind } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { EncodedSpans, encodeSpansRequest } from "../core/telemetry/otlp/request.ts";
import { RecordedSpan } from "../core/telemetry/otlp/spans.ts";
import { SpanFactory } from "../core/telemetry/otlp/factory.ts";

const resource = resourceFromAttributes({ "service.name": "fulcrum" });
const ended: RecordedSpan[] = [];
const f = new SpanFactory({
  sink: { onEnd: (s) => ended.push(s as RecordedSpan) },
  resource,
  scope: { name: "fulcrum", version: "1" },
  sampleRatio: 1,
});
for (let i = 0; i < 1000; i++) {
  const server = (f.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan).init("GET web", {
    "http.request.method": "GET",
    "url.path": `/users/${i}`,
    "url.scheme": "http",
    "server.address": "127.0.0.1",
    "client.address": "127.0.0.1",
    "http.route": "web",
  });
  const client = f.child(server, SpanKind.CLIENT).init("GET web", {
    "http.request.method": "GET",
    "url.full": `http://127.0.0.1:7501/users/${i}`,
    "server.address": "127.0.0.1",
    "server.port": 7501,
    "network.peer.address": "127.0.0.1",
    "network.peer.port": 7501,
    "fulcrum.pool": "web",
    "fulcrum.backend": "b1",
    "fulcrum.strategy": "round-robin",
    "fulcrum.attempt": 1,
  });
  client.setAttribute("http.response.status_code", 200);
  client.end();
  for (
    const [k, v] of [["fulcrum.pool", "web"], ["fulcrum.backend", "b1"], ["fulcrum.attempts", 1], ["http.response.body.size", 100], [
      "http.response.status_code",
      200,
    ]] as const
  ) server.setAttribute(k, v);
  server.end();
}

const ROUNDS = 6;
const REPEAT = 100;
let sink = 0;
const perSpan = (t0: number) => ((Bun.nanoseconds() - t0) / (REPEAT * ended.length)).toFixed(0).padStart(5);
console.log(`bun ${Bun.version}, ${ended.length} spans x ${REPEAT} per round, ns a span`);
for (let r = 0; r < ROUNDS; r++) {
  const t0 = Bun.nanoseconds();
  for (let k = 0; k < REPEAT; k++) {
    let batch = new EncodedSpans();
    for (const s of ended) {
      batch.add(s);
      if (batch.count === 512) {
        sink += encodeSpansRequest(batch).length;
        batch.release();
        batch = new EncodedSpans();
      }
    }
    batch.release();
  }
  console.log(`round ${r + 1}: ${perSpan(t0)}`);
}
if (sink === 0) throw new Error("nothing encoded");
