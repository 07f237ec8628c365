/** WebSocket test helpers: a `ws` echo backend on loopback, and a client that awaits what it is sent. */
import { afterEach } from "bun:test";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import type { IncomingMessage } from "node:http";

export interface WsBackend {
  readonly port: number;
  readonly url: string;
  readonly wss: WebSocketServer;
  /** Server-side sockets accepted, in order, with their handshake request. */
  readonly accepted: { ws: WebSocket; req: IncomingMessage }[];
  /** Close codes the backend received from its clients, in order. */
  readonly closes: { code: number; reason: string }[];
  stop(): Promise<void>;
}

/** A `ws` server echoing every message (text stays text, binary stays binary), unless `onConnection` is given. */
export async function startWsBackend(
  options: {
    onConnection?: (ws: WebSocket, req: IncomingMessage) => void;
    handleProtocols?: (p: Set<string>) => string | false;
    perMessageDeflate?: boolean;
  } = {},
): Promise<WsBackend> {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    handleProtocols: options.handleProtocols,
    perMessageDeflate: options.perMessageDeflate ?? false,
    maxPayload: 64 * 1024 * 1024,
  });
  await new Promise<void>((r) => wss.once("listening", () => r()));
  const port = (wss.address() as { port: number }).port;
  const accepted: WsBackend["accepted"] = [];
  const closes: WsBackend["closes"] = [];
  wss.on("connection", (ws, req) => {
    accepted.push({ ws, req });
    ws.on("close", (code, reason) => closes.push({ code, reason: String(reason) }));
    ws.on("error", () => {});
    if (options.onConnection) return options.onConnection(ws, req);
    ws.on("message", (m: RawData, binary) => ws.send(m as Buffer, { binary }));
  });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    wss,
    accepted,
    closes,
    stop: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

/** A client whose messages and close can be awaited. */
export class WsClient {
  readonly messages: { data: Buffer; binary: boolean }[] = [];
  #waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;
  constructor(readonly ws: WebSocket) {
    ws.on("message", (data, binary) => {
      this.messages.push({ data: data as Buffer, binary });
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((r) => ws.on("close", (code, reason) => r({ code, reason: String(reason) })));
    this.opened = new Promise((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
    ws.on("error", () => {});
  }

  /** The next message after the `n` already received. */
  async message(n = this.messages.length, timeoutMs = 10_000): Promise<{ data: Buffer; binary: boolean }> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length <= n) {
      if (Date.now() > deadline) throw new Error(`no message ${n + 1} within ${timeoutMs}ms`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.messages[n]!;
  }
}

/** Connect to `url` (http:// is made ws://); `opened` rejects with the status of a refused handshake. */
export function wsConnect(url: string, options: { protocols?: string[]; headers?: Record<string, string> } = {}): WsClient {
  const ws = new WebSocket(url.replace(/^http/, "ws"), options.protocols ?? [], { headers: options.headers, maxPayload: 64 * 1024 * 1024 });
  return new WsClient(ws);
}

/** WebSocket servers and clients closed after each test. */
export function wsScope() {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  return {
    async backend(options?: Parameters<typeof startWsBackend>[0]): Promise<WsBackend> {
      const b = await startWsBackend(options);
      cleanups.push(() => b.stop());
      return b;
    },
    client(url: string, options?: Parameters<typeof wsConnect>[1]): WsClient {
      const c = wsConnect(url, options);
      cleanups.push(() => c.ws.terminate());
      return c;
    },
  };
}

/** Wait until `check` is true (polling every 10 ms), or fail after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
