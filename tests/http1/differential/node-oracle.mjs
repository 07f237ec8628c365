// The oracle of the differential test (tests/http1/differential/): Node's own `http` server, whose
// parser is llhttp in strict mode (no insecureHTTPParser, no lenient flags). Run with `node`, not
// Bun (Bun's node:http is not llhttp). Prints `listening <port> {node, llhttp, methods}` on stdout, then
// one JSON line per
// closed connection: what llhttp parsed on it, read from the server's own parser callbacks (so the
// record is exact and synchronous, not what a request stream happened to deliver before a close):
//
//   { "port": <client port>, "messages": [ { method, url, version, headers, body (base64),
//     complete, delivered } ], "error": "HPE_…" | null, "errorAt": { bytesParsed, packet } }
//
// `complete`: llhttp reached the end of the message. `delivered`: the server handed it to the
// application (a 'request' event): Node answers some parsed requests itself (400 for an HTTP/1.1
// request without Host, 417 for an unknown Expect, CONNECT and upgrades go elsewhere).
// The client sends its bytes, then FIN: llhttp's finish() then tells an incomplete message apart.
import http from "node:http";
import { Buffer } from "node:buffer";
import process from "node:process";

const { HTTPParser } = process.binding("http_parser");
const ON_HEADERS_COMPLETE = HTTPParser.kOnHeadersComplete;
const ON_BODY = HTTPParser.kOnBody;
const ON_MESSAGE_COMPLETE = HTTPParser.kOnMessageComplete;
const WRAPPED = Symbol("wrapped");
const REC = Symbol("record");

/** The record of the connection a parser is serving (parsers are pooled and reused). */
const recordOf = (parser) => parser.socket?.[REC];

function wrap(parser) {
  if (parser[WRAPPED]) return;
  parser[WRAPPED] = true;
  const headersComplete = parser[ON_HEADERS_COMPLETE];
  parser[ON_HEADERS_COMPLETE] = function (major, minor, ...rest) {
    recordOf(this)?.messages.push({
      method: null,
      url: null,
      version: `${major}.${minor}`,
      headers: [],
      body: [],
      complete: false,
      delivered: false,
    });
    return headersComplete.call(this, major, minor, ...rest);
  };
  const body = parser[ON_BODY];
  parser[ON_BODY] = function (b, ...rest) {
    const m = recordOf(this)?.messages.at(-1);
    if (m !== undefined) m.body.push(Buffer.from(b));
    return body.call(this, b, ...rest);
  };
  const complete = parser[ON_MESSAGE_COMPLETE];
  parser[ON_MESSAGE_COMPLETE] = function (...args) {
    const m = recordOf(this)?.messages.at(-1);
    if (m !== undefined) m.complete = true;
    return complete.apply(this, args);
  };
}

const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
  const m = req.socket[REC]?.messages.at(-1);
  if (m !== undefined) {
    m.method = req.method;
    m.url = req.url;
    m.headers = req.rawHeaders;
    m.delivered = true;
  }
  req.on("error", () => {});
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-length": "2" });
    res.end("ok");
  });
});

server.on("connection", (socket) => {
  const rec = { port: socket.remotePort, messages: [], error: null };
  socket[REC] = rec;
  if (socket.parser) wrap(socket.parser);
  socket.on("close", () => {
    const out = {
      ...rec,
      messages: rec.messages.map((m) => ({ ...m, body: Buffer.concat(m.body).toString("base64") })),
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  });
});

server.on("clientError", (err, socket) => {
  const rec = socket[REC];
  if (rec !== undefined && rec.error === null) {
    rec.error = err.code ?? String(err.message);
    if (typeof err.bytesParsed === "number") rec.errorAt = { bytesParsed: err.bytesParsed, packet: err.rawPacket?.length ?? -1 };
  }
  if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
  socket.destroy();
});

server.listen(0, "127.0.0.1", () => {
  const about = { node: process.versions.node, llhttp: process.versions.llhttp, methods: http.METHODS };
  process.stdout.write(`listening ${server.address().port} ${JSON.stringify(about)}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
