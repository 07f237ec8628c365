/**
 * The host side of {@link Transform} middleware: the request edit they see (a new target,
 * header changes kept as a small map and applied to the headers the proxy sends), and their
 * response edits, on the proxy's header list (direct path) or on a web `Response` (Hono chain).
 */
import type { Transform, TransformRequest, TransformResponse } from "../plugins/api.ts";
import { HOP_BY_HOP } from "../http1/headers.ts";
import type { BodyInRead, HeaderBlock } from "../http1/bytes.ts";
import type { Exchange, Incoming } from "./exchange.ts";

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\r\n\0]/;

/** Names a transform may not set: the proxy frames the message itself. */
function checkHeader(name: string, value: string | undefined): string {
  const n = name.toLowerCase();
  if (!TOKEN.test(n)) throw new TypeError(`not a header name: ${JSON.stringify(name)}`);
  if (HOP_BY_HOP.has(n) || n === "content-length") throw new TypeError(`${n} is set by the proxy and cannot be changed`);
  if (value !== undefined && BAD_VALUE.test(value)) throw new TypeError(`header ${n}: the value may not contain CR, LF or NUL`);
  return n;
}

/** The request a transform edits; `changes` is undefined until a header is touched. */
export class RequestEdit implements TransformRequest {
  target: string;
  requestId: string | undefined = undefined;
  changes: Map<string, string | null> | undefined = undefined;
  /** A change touched a header the client sent: its lines cannot be forwarded as bytes. */
  touchesClient = false;
  constructor(
    readonly method: string,
    readonly path: string,
    readonly query: string,
    readonly host: string,
    readonly clientIp: string,
    /** Path and query as the client sent them. */
    readonly original: string,
    private readonly read: (name: string) => string | null,
  ) {
    this.target = original;
  }

  /** For the raw listener's request: `target` is its path and query as sent. */
  static of(ex: Exchange, target: string, host: string, read: (name: string) => string | null): RequestEdit {
    const q = target.indexOf("?");
    return new RequestEdit(ex.method, ex.path, q < 0 ? "" : target.slice(q), host, ex.clientIp, target, read);
  }

  header(name: string): string | undefined {
    const n = name.toLowerCase();
    const changed = this.changes?.get(n);
    if (changed !== undefined) return changed ?? undefined;
    return this.read(n) ?? undefined;
  }
  setHeader(name: string, value: string): void {
    this.#change(checkHeader(name, value), value);
  }
  addHeader(name: string, value: string): void {
    const n = checkHeader(name, value);
    const prev = this.header(n);
    this.#change(n, prev === undefined ? value : `${prev}, ${value}`);
  }
  removeHeader(name: string): void {
    this.#change(checkHeader(name, undefined), null);
  }
  #change(n: string, value: string | null): void {
    if (!this.touchesClient && this.read(n) !== null) this.touchesClient = true;
    (this.changes ??= new Map()).set(n, value);
  }

  /** Put what the transforms did on the request record (access log, span). */
  record(ex: Exchange): void {
    if (this.target !== this.original) ex.upstreamPath = this.target;
    if (this.requestId !== undefined) ex.requestId = this.requestId;
  }
}

/** {@link Incoming} with a transform's edits: the new target, and the header changes on what is forwarded. */
export class EditedIncoming implements Incoming {
  upgrade: string | undefined;
  constructor(private readonly inner: Incoming, private readonly edit: RequestEdit) {
    this.upgrade = inner.upgrade;
  }
  get method() {
    return this.inner.method;
  }
  get target() {
    return this.edit.target;
  }
  get clientTarget() {
    return this.edit.original;
  }
  get host() {
    return this.inner.host;
  }
  get proto() {
    return this.inner.proto;
  }
  get bodyLength() {
    return this.inner.bodyLength;
  }
  get body() {
    return this.inner.body;
  }
  get signal() {
    return this.inner.signal;
  }
  get headers() {
    return this.inner.headers;
  }
  forwardHeaders(clientIp: string): Record<string, string> {
    return this.#apply(this.inner.forwardHeaders(clientIp));
  }
  /**
   * The client's lines as bytes while no change touched a header the client sent (a path
   * rewrite, or a header the client did not send such as a new X-Request-Id, keeps them).
   */
  forwardBlock(clientIp: string, tracing: boolean): { headers: Record<string, string>; block: HeaderBlock } | undefined {
    if (this.edit.touchesClient || this.inner.forwardBlock === undefined) return undefined;
    const fwd = this.inner.forwardBlock(clientIp, tracing);
    if (fwd !== undefined) this.#apply(fwd.headers);
    return fwd;
  }
  bodyFault(): number {
    return this.inner.bodyFault();
  }
  wholeBody(): Uint8Array | undefined {
    return this.inner.wholeBody?.();
  }
  wholeBodyInRead(): BodyInRead | undefined {
    return this.inner.wholeBodyInRead?.();
  }
  #apply(headers: Record<string, string>): Record<string, string> {
    const changes = this.edit.changes;
    if (changes !== undefined) {
      for (const [name, value] of changes) {
        if (value === null) delete headers[name];
        else headers[name] = value;
      }
    }
    return headers;
  }
}

/** Run the request hooks in order until one answers; `ran` is how many ran (their response hooks run). */
export function runRequestHooks(transforms: readonly Transform[], edit: RequestEdit): { answer: Response | undefined; ran: number } {
  let ran = 0;
  while (ran < transforms.length) {
    const answer = transforms[ran++]!.request?.(edit);
    if (answer instanceof Response) return { answer, ran };
  }
  return { answer: undefined, ran };
}

/** The backend's headers as the proxy's `name, value, …` list (lower-case names), edited in place. */
export class ListResponseEdit implements TransformResponse {
  constructor(readonly status: number, readonly list: string[]) {}
  header(name: string): string | undefined {
    const n = name.toLowerCase();
    let out: string | undefined;
    for (let i = 0; i < this.list.length; i += 2) {
      if (this.list[i] === n) out = out === undefined ? this.list[i + 1] : `${out}, ${this.list[i + 1]}`;
    }
    return out;
  }
  setHeader(name: string, value: string): void {
    const n = checkHeader(name, value);
    this.#remove(n);
    this.list.push(n, value);
  }
  addHeader(name: string, value: string): void {
    this.list.push(checkHeader(name, value), value);
  }
  removeHeader(name: string): void {
    this.#remove(checkHeader(name, undefined));
  }
  #remove(n: string): void {
    const l = this.list;
    let w = 0;
    for (let i = 0; i < l.length; i += 2) {
      if (l[i] !== n) {
        l[w++] = l[i]!;
        l[w++] = l[i + 1]!;
      }
    }
    l.length = w;
  }
}

/**
 * The backend's headers kept as its bytes (HeaderBlock): a hook that only adds headers the backend
 * did not send (RateLimit, X-Request-Id, …) leaves them bytes, its lines written after them; any
 * other edit, or a read, falls back to a {@link ListResponseEdit} of the parsed list.
 */
export class BlockResponseEdit implements TransformResponse {
  #list: ListResponseEdit | undefined;
  readonly #extra: string[] = [];
  constructor(readonly status: number, readonly block: HeaderBlock, readonly parsed: () => readonly string[]) {}
  #fallback(): ListResponseEdit {
    return (this.#list ??= new ListResponseEdit(this.status, [...this.parsed(), ...this.#extra]));
  }
  header(name: string): string | undefined {
    return this.#fallback().header(name);
  }
  setHeader(name: string, value: string): void {
    const n = checkHeader(name, value);
    if (this.#list !== undefined || this.#extra.includes(n) || blockHas(this.block, n)) this.#fallback().setHeader(n, value);
    else this.#extra.push(n, value);
  }
  addHeader(name: string, value: string): void {
    const n = checkHeader(name, value);
    if (this.#list !== undefined) this.#list.addHeader(n, value);
    else this.#extra.push(n, value);
  }
  removeHeader(name: string): void {
    this.#fallback().removeHeader(name);
  }
  /** What to answer with: the block as it came, the block with the added lines, or the edited list. */
  headers(): HeaderBlock | string[] {
    if (this.#list !== undefined) return this.#list.list;
    const extra = this.#extra;
    if (extra.length === 0) return this.block;
    let lines = "";
    for (let i = 0; i < extra.length; i += 2) lines += `${extra[i]}: ${extra[i + 1]}\r\n`;
    const b = this.block;
    const buf = Buffer.allocUnsafe(b.size + Buffer.byteLength(lines, "latin1"));
    let at = 0;
    for (let i = 0; i < b.runs.length; i += 2) at += b.buf.copy(buf, at, b.runs[i], b.runs[i + 1]);
    buf.write(lines, at, "latin1");
    return { buf, runs: [0, buf.length], size: buf.length, hasDate: b.hasDate || extra.includes("date") };
  }
}

/**
 * The backend's head after a direct-path route's response hooks (the first `ran` of `transforms`):
 * its bytes when the hooks only added headers, else the edited list.
 */
export function editedHead(
  transforms: readonly Transform[],
  ran: number,
  edit: RequestEdit,
  status: number,
  block: HeaderBlock | undefined,
  parsed: () => readonly string[],
): HeaderBlock | string[] {
  const res = block !== undefined ? new BlockResponseEdit(status, block, parsed) : new ListResponseEdit(status, parsed().slice());
  runResponseHooks(transforms, ran, res, edit);
  return res instanceof BlockResponseEdit ? res.headers() : res.list;
}

/** Whether a line of `block` is header `name` (lower-case), compared without case. */
function blockHas(block: HeaderBlock, name: string): boolean {
  const buf = block.buf;
  const runs = block.runs;
  const n = name.length;
  for (let r = 0; r < runs.length; r += 2) {
    const end = runs[r + 1]!;
    for (let at = runs[r]!; at + n < end;) {
      let i = 0;
      // ASCII letters compare with their 0x20 bit set; other name characters are the same either way.
      while (i < n && (buf[at + i]! | 0x20) === (name.charCodeAt(i) | 0x20)) i++;
      if (i === n && buf[at + n] === 58) return true;
      const lf = buf.indexOf(10, at);
      if (lf < 0 || lf >= end) break;
      at = lf + 1;
    }
  }
  return false;
}

/** A web Response's headers; a Response whose headers are immutable (Response.redirect) is copied first. */
export class ResponseEdit implements TransformResponse {
  constructor(public response: Response) {}
  get status() {
    return this.response.status;
  }
  header(name: string): string | undefined {
    return this.response.headers.get(name) ?? undefined;
  }
  setHeader(name: string, value: string): void {
    const n = checkHeader(name, value);
    this.#mutable((h) => h.set(n, value));
  }
  addHeader(name: string, value: string): void {
    const n = checkHeader(name, value);
    this.#mutable((h) => h.append(n, value));
  }
  removeHeader(name: string): void {
    const n = checkHeader(name, undefined);
    this.#mutable((h) => h.delete(n));
  }
  #mutable(change: (h: Headers) => void): void {
    try {
      change(this.response.headers);
    } catch {
      const r = this.response;
      this.response = new Response(r.body, { status: r.status, statusText: r.statusText, headers: new Headers(r.headers) });
      change(this.response.headers);
    }
  }
}

/** Run the response hooks of the first `ran` transforms, last first. */
export function runResponseHooks(transforms: readonly Transform[], ran: number, res: TransformResponse, edit: RequestEdit): void {
  for (let i = ran - 1; i >= 0; i--) transforms[i]!.response?.(res, edit);
}
