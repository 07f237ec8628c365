/**
 * The oracle's side of the differential test: Node's `http` server (llhttp, strict) in a child
 * process (node-oracle.mjs), sent each case's bytes over a new loopback connection followed by a
 * FIN, and asked what it parsed. `node` must be on PATH (Node 20+; npm needs it anyway).
 */
import { Buffer } from "node:buffer";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { join } from "node:path";

/** A request llhttp parsed. */
export interface NodeMessage {
  method: string | null;
  url: string | null;
  version: string;
  /** name, value, … as sent (Node's rawHeaders). */
  headers: string[];
  body: Buffer;
  /** llhttp reached the message's end. */
  complete: boolean;
  /** The server handed it to the application (not answered by Node itself: no Host, an unknown Expect, CONNECT, an upgrade). */
  delivered: boolean;
}

export interface NodeVerdict {
  messages: NodeMessage[];
  /** llhttp's error code (HPE_…), or null. */
  error: string | null;
  /** The bytes llhttp had parsed of the read it failed in, and the size of that read (from the error). */
  errorAt?: { bytesParsed: number; packet: number };
}

interface Raw {
  port: number;
  messages: (Omit<NodeMessage, "body"> & { body: string })[];
  error: string | null;
  errorAt?: { bytesParsed: number; packet: number };
}

export class NodeOracle {
  #child: ChildProcessWithoutNullStreams;
  #waiting = new Map<number, (r: Raw) => void>();
  port = 0;
  /** Node's version and its llhttp's. */
  versions = "";
  /** The methods llhttp knows (node:http's METHODS). */
  methods: ReadonlySet<string> = new Set();

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
  }

  static async start(): Promise<NodeOracle> {
    const child = spawn("node", ["--no-deprecation", join(import.meta.dir, "node-oracle.mjs")], { stdio: ["pipe", "pipe", "pipe"] });
    const oracle = new NodeOracle(child);
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: child.stdout });
    await new Promise<void>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`node oracle exited (${code}): ${stderr}`)));
      lines.on("line", (line) => {
        if (line.startsWith("listening ")) {
          const [, port, json] = /^listening (\d+) (.*)$/.exec(line)!;
          const about = JSON.parse(json!) as { node: string; llhttp: string; methods: string[] };
          oracle.port = Number(port);
          oracle.versions = `node ${about.node}, llhttp ${about.llhttp}`;
          oracle.methods = new Set(about.methods);
          return resolve();
        }
        const r = JSON.parse(line) as Raw;
        const w = oracle.#waiting.get(r.port);
        oracle.#waiting.delete(r.port);
        w?.(r);
      });
    });
    return oracle;
  }

  /** What llhttp parsed of `bytes` on a connection of its own, closed by the client after them. */
  verdict(bytes: Uint8Array, timeoutMs = 5000): Promise<NodeVerdict> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: this.port });
      let localPort = 0;
      const timer = setTimeout(() => {
        this.#waiting.delete(localPort);
        socket.destroy();
        reject(new Error(`node oracle: no record after ${timeoutMs}ms`));
      }, timeoutMs);
      const done = (r: Raw) => {
        clearTimeout(timer);
        socket.destroy();
        resolve({
          error: r.error,
          errorAt: r.errorAt,
          messages: r.messages.map((m) => ({ ...m, body: Buffer.from(m.body, "base64") })),
        });
      };
      socket.on("data", () => {}); // the answers are read and dropped (Node stops reading when they pile up)
      socket.on("error", () => {}); // a reset after Node's error answer: the record tells
      socket.once("connect", () => {
        localPort = socket.localPort!;
        this.#waiting.set(localPort, done);
        socket.end(bytes);
      });
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.#child.once("exit", r));
    this.#child.stdin.end();
    await exited;
  }
}
