/**
 * Fulcrum's side of the differential test: the real proxy (in-process, its own listener, its own
 * upstream client) in front of a backend that records every request it parses. A few "slots" run
 * cases side by side, each a Fulcrum with a backend of its own, so that what a backend saw belongs
 * to one case; a slot runs one case at a time, on a new client connection.
 *
 * When is Fulcrum done with a case? It closes the connection (a refusal, `Connection: close`), or
 * it goes quiet: nothing new at the client or the backend over a few event-loop turns (Fulcrum,
 * its backend and this code share one event loop, so a quiet turn means every byte was read),
 * with as many requests forwarded as its own parser says (model.ts) and none in flight, or one in
 * flight that waits for more body bytes. A client FIN cannot end a case: Fulcrum aborts a request
 * in flight when its client leaves.
 */
import { Buffer } from "node:buffer";
import { createServer, type Server, type Socket } from "node:net";
import { decodeChunked, RawClient } from "../../helpers/raw-client.ts";
import { startFulcrum, type InProcess } from "../../helpers/fulcrum.ts";

export const MAX_BODY = 64 * 1024;
/** What the backend answers every request: no body (so HEAD needs no care), a mark to tell it from Fulcrum's own answers. */
const BACKEND_ANSWER = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-backend: yes\r\n\r\n";

/** A request as the backend parsed it. */
export interface Forwarded {
  method: string;
  target: string;
  version: string;
  /** Lower-cased names, values without surrounding whitespace. */
  headers: [string, string][];
  body: Buffer;
}

/** An answer Fulcrum wrote to the client. */
export interface Answer {
  status: number;
  body: string;
  /** The backend's answer (passed on), not Fulcrum's own. */
  fromBackend: boolean;
}

export interface Through {
  forwarded: Forwarded[];
  answers: Answer[];
  /** Fulcrum closed the connection. */
  closed: boolean;
  /** Nothing settled within the bound (the verdict may be incomplete). */
  timedOut: boolean;
  /** What the backend could not parse (Fulcrum forwarded something malformed). */
  backendErrors: string[];
}

/** A backend that parses requests strictly enough to see two of them where there should be one. */
class Backend {
  requests: Forwarded[] = [];
  errors: string[] = [];
  /** Bytes received and not yet part of a whole request, over all connections. */
  partial = 0;
  /** Bytes received in all. */
  received = 0;
  #server: Server;
  #sockets = new Set<Socket>();
  port = 0;

  constructor() {
    this.#server = createServer((s) => this.#serve(s));
  }

  listen(): Promise<void> {
    return new Promise((r) =>
      this.#server.listen(0, "127.0.0.1", () => {
        this.port = (this.#server.address() as { port: number }).port;
        r();
      })
    );
  }

  reset(): void {
    this.requests = [];
    this.errors = [];
    this.received = 0;
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    let buf: Buffer = Buffer.alloc(0);
    socket.on("error", () => {});
    socket.on("close", () => {
      this.#sockets.delete(socket);
      this.partial -= buf.length;
    });
    socket.on("data", (chunk: Buffer) => {
      this.received += chunk.length;
      this.partial -= buf.length;
      buf = Buffer.concat([buf, chunk]);
      try {
        buf = this.#parse(buf, socket);
      } catch (e) {
        this.errors.push(String(e));
        buf = Buffer.alloc(0);
        socket.destroy();
      }
      this.partial += buf.length;
    });
  }

  /** Record the whole requests at the start of `buf`, answer each; returns the rest. */
  #parse(buf: Buffer, socket: Socket): Buffer {
    for (;;) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return buf;
      const [line, ...lines] = buf.toString("latin1", 0, end).split("\r\n");
      const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(1\.[01])$/.exec(line!);
      if (m === null) throw new Error(`bad request line ${JSON.stringify(line)}`);
      const headers = lines.map((l): [string, string] => {
        const colon = l.indexOf(":");
        if (colon <= 0 || /[\s]/.test(l.slice(0, colon))) throw new Error(`bad header line ${JSON.stringify(l)}`);
        return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "")];
      });
      const te = headers.filter(([n]) => n === "transfer-encoding");
      const cl = headers.filter(([n]) => n === "content-length");
      if (te.length > 0 && cl.length > 0) throw new Error(`${m[2]} forwarded with both Transfer-Encoding and Content-Length`);
      if (cl.length > 1 || te.length > 1) throw new Error(`${m[2]} forwarded with two framing headers`);
      let body: Buffer;
      let next: number;
      if (te.length === 1) {
        if (te[0]![1] !== "chunked") throw new Error(`${m[2]} forwarded with transfer-encoding ${te[0]![1]}`);
        const d = decodeChunked(buf, end + 4);
        if (d === undefined) return buf;
        body = d.body;
        next = d.end;
      } else {
        if (cl.length === 1 && !/^\d+$/.test(cl[0]![1])) throw new Error(`${m[2]} forwarded with content-length ${cl[0]![1]}`);
        const n = cl.length === 1 ? Number(cl[0]![1]) : 0;
        if (buf.length < end + 4 + n) return buf;
        body = Buffer.from(buf.subarray(end + 4, end + 4 + n));
        next = end + 4 + n;
      }
      this.requests.push({ method: m[1]!, target: m[2]!, version: m[3]!, headers, body });
      socket.write(BACKEND_ANSWER);
      buf = buf.subarray(next);
    }
  }

  stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((r) => this.#server.close(() => r()));
  }
}

/**
 * The answers in `bytes` (Content-Length or chunked, as Fulcrum frames them); interim 1xx skipped.
 * `methods` are the requests' in order: an answer to HEAD has no body whatever its head says.
 */
export function answersIn(bytes: Buffer, methods: readonly string[]): Answer[] {
  const out: Answer[] = [];
  let off = 0;
  for (;;) {
    const end = bytes.indexOf("\r\n\r\n", off);
    if (end < 0) return out;
    const head = bytes.toString("latin1", off, end);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
    const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
    let body = "";
    if ((status >= 100 && status < 200) || methods[out.length] === "HEAD") off = end + 4;
    else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      const d = decodeChunked(bytes, end + 4);
      if (d === undefined) return out;
      body = d.body.toString("latin1");
      off = d.end;
    } else {
      const n = cl ? Number(cl[1]) : 0;
      body = bytes.toString("latin1", end + 4, end + 4 + n);
      off = end + 4 + n;
    }
    if (status >= 200 || status < 100) out.push({ status, body: body.trim(), fromBackend: /\r\nx-backend: yes/i.test(head) });
  }
}

/**
 * What Fulcrum's own parser (model.ts) says of a case: how many requests it reads (each gets an
 * answer, the backend's or Fulcrum's), their methods, and whether it then waits for more bytes.
 */
export interface Expect {
  requests: number;
  methods: readonly string[];
  waits: boolean;
}

interface Slot {
  fulcrum: InProcess;
  backend: Backend;
}

const turn = () => new Promise((r) => setTimeout(r, 1));

export class ThroughFulcrum {
  #free: Slot[] = [];
  #waiting: ((s: Slot) => void)[] = [];
  #all: Slot[] = [];

  static async start(slots: number): Promise<ThroughFulcrum> {
    const t = new ThroughFulcrum();
    for (let i = 0; i < slots; i++) {
      const backend = new Backend();
      await backend.listen();
      // The defaults an operator runs with (retries on, small bodies buffered), and a generous
      // idle timeout: a case ends by closing or going quiet, never by Fulcrum's timers.
      const fulcrum = await startFulcrum(`pools:
  web:
    backends: ["http://127.0.0.1:${backend.port}"]
limits:
  max_request_body: ${MAX_BODY}
  client_idle_timeout: 20s
  client_body_timeout: 20s
log: { level: error, access_log: false }
admin: false
`);
      t.#all.push({ fulcrum, backend });
    }
    t.#free = [...t.#all];
    return t;
  }

  /** The stacks of errors thrown inside the Fulcrums (logged as "internal error while serving"): a bug each. */
  internalErrors(): string[] {
    return this.#all.flatMap((s) =>
      s.fulcrum.records.filter((r) => String(r.rawMessage).startsWith("internal error")).map((r) => String(r.properties.stack))
    );
  }

  async #take(): Promise<Slot> {
    return this.#free.pop() ?? new Promise<Slot>((r) => this.#waiting.push(r));
  }

  #give(s: Slot): void {
    const w = this.#waiting.shift();
    if (w !== undefined) w(s);
    else this.#free.push(s);
  }

  /**
   * Send `bytes` on a new connection and collect what Fulcrum forwarded and answered. `expect` is
   * what its own parser says: how many requests it forwards and whether it then waits for more.
   */
  async send(bytes: Uint8Array, expect: Expect): Promise<Through> {
    const slot = await this.#take();
    try {
      return await this.#send(slot, bytes, expect);
    } finally {
      this.#give(slot);
    }
  }

  async #send(slot: Slot, bytes: Uint8Array, expect: Expect): Promise<Through> {
    const { backend, fulcrum } = slot;
    const gateway = fulcrum.server.gateway;
    backend.reset();
    const c = await RawClient.connect(fulcrum.server.listener.port);
    c.write(bytes);
    const t0 = performance.now();
    const signature = () => `${c.received.length}/${backend.received}/${backend.requests.length}/${gateway.inflight()}`;
    let last = "";
    let quiet = 0;
    let timedOut = false;
    let answered = 0;
    for (;;) {
      await turn();
      if (c.closed) break;
      const s = signature();
      if (s !== last) {
        last = s;
        quiet = 0;
        answered = answersIn(c.received, expect.methods).length;
        continue;
      }
      quiet++;
      const inflight = gateway.inflight();
      const expected = answered >= expect.requests && (inflight === 0 || expect.waits || backend.partial > 0);
      if (quiet >= 3 && expected) break;
      // Not what Fulcrum's parser says it does: give it longer before taking what it did.
      if (quiet >= 40) break;
      if (performance.now() - t0 > 3000) {
        timedOut = true;
        break;
      }
    }
    const closed = c.closed;
    const answers = answersIn(c.received, expect.methods);
    c.destroy();
    // Whatever was in flight is aborted by the close: wait for it, so that nothing of this case
    // reaches the backend during the next one.
    const drained = gateway.drained();
    const bound = new Promise((r) => setTimeout(r, 3000));
    await Promise.race([drained, bound]);
    return { forwarded: backend.requests, answers, closed, timedOut, backendErrors: backend.errors };
  }

  async stop(): Promise<void> {
    for (const s of this.#all) {
      await s.fulcrum.stop();
      await s.backend.stop();
    }
  }
}
