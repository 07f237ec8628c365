/**
 * The differential test's corpus (tests/http1/corpus/*.md): raw requests written as llhttp writes
 * its own request tests, so that its cases could be imported as they are (see
 * tests/http1/corpus/README.md for the format). Reading a file gives its cases; {@link encode}
 * writes bytes back in the same form (the llhttp importer and the fuzzer's reports use it).
 */
import { Buffer } from "node:buffer";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const CORPUS_DIR = join(import.meta.dir, "..", "corpus");

export interface Case {
  /** `file.md#n`: the file and the case's number in it (from 1). */
  id: string;
  /** The heading path (`##`, `###`, … joined with ` / `). */
  name: string;
  /** Where the case comes from: an llhttp test (file:line) or the literature (CL.TE, TE.TE, …). */
  origin: string;
  /** `key: value` lines between the heading and the block, other than origin. */
  notes: Record<string, string>;
  bytes: Buffer;
}

/**
 * The bytes of an ```http block, as llhttp's test/md-test.ts reads them: the last newline is
 * dropped, a backslash at a line's end joins it to the next, newlines become CRLF, then `\r`,
 * `\n`, `\t`, `\f` and `\xNN` (exactly two hex digits here: llhttp's own regex takes any number)
 * are replaced by their bytes.
 */
export function decode(block: string): Buffer {
  let s = block.replace(/\n$/, "");
  s = s.replace(/\\(\r\n|\r|\n)/g, "");
  s = s.replace(/\r\n|\r|\n/g, "\r\n");
  s = s.replace(/\\(r|n|t|f|x[0-9a-fA-F]{2})/g, (_, e: string) => {
    switch (e[0]) {
      case "r":
        return "\r";
      case "n":
        return "\n";
      case "t":
        return "\t";
      case "f":
        return "\f";
      default:
        return String.fromCharCode(parseInt(e.slice(1), 16));
    }
  });
  return Buffer.from(s, "latin1");
}

/**
 * `bytes` as the text of an ```http block that {@link decode} reads back to the same bytes: CRLF
 * as a line break, lone CR and LF as `\r` and `\n`, tab as `\t`, other control bytes, bytes above
 * 0x7e, a backslash, a space or tab before a line break, and the backquote of a line starting with
 * three as `\xNN`.
 */
export function encode(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 13 && bytes[i + 1] === 10) {
      out += "\n";
      i++;
    } else if (c === 96 && (i === 0 || (bytes[i - 1] === 10 && bytes[i - 2] === 13)) && bytes[i + 1] === 96 && bytes[i + 2] === 96) {
      out += "\\x60"; // a line that starts with ``` would end the block
    } else if (c === 13) out += "\\r";
    else if (c === 10) out += "\\n";
    else if (c === 9 && !endsLine(bytes, i + 1)) out += "\\t";
    else if (c === 32 && !endsLine(bytes, i + 1)) out += " ";
    else if (c === 12) out += "\\f";
    else if (c < 32 || c >= 127 || c === 92 || c === 32 || c === 9) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += String.fromCharCode(c);
  }
  // The block's own last newline (decode drops one).
  return `${out}\n`;
}

/** Whether a line break (CRLF) or the end of the input is at `i`: a space there would not show. */
function endsLine(bytes: Uint8Array, i: number): boolean {
  return i >= bytes.length || (bytes[i] === 13 && bytes[i + 1] === 10);
}

/** The cases of one corpus file's text. */
export function parseCorpus(file: string, text: string): Case[] {
  const cases: Case[] = [];
  const path: string[] = [];
  const lines = text.split("\n");
  let notes: Record<string, string> = {};
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^(#{2,6}) (.*)$/.exec(line);
    if (h) {
      path.length = h[1]!.length - 2;
      path.push(h[2]!.trim());
      notes = {};
      continue;
    }
    const kv = /^([a-z][a-z-]*): (.*)$/.exec(line);
    if (kv) {
      notes[kv[1]!] = kv[2]!;
      continue;
    }
    if (line.trim() === "```http") {
      const start = i + 1;
      let end = start;
      while (end < lines.length && lines[end]!.trim() !== "```") end++;
      if (end >= lines.length) throw new Error(`${file}:${i + 1}: unterminated block`);
      const { origin, ...rest } = notes;
      if (origin === undefined) throw new Error(`${file}:${i + 1}: a case without an origin line`);
      cases.push({
        id: `${file}#${cases.length + 1}`,
        name: path.join(" / "),
        origin,
        notes: rest,
        bytes: decode(lines.slice(start, end).map((l) => `${l}\n`).join("")),
      });
      i = end;
      notes = {};
    }
  }
  return cases;
}

/** Every case of every corpus file, in file order. */
export function loadCorpus(dir = CORPUS_DIR): Case[] {
  const files = readdirSync(dir).filter((f) => f.endsWith(".md") && f !== "README.md").sort();
  return files.flatMap((f) => parseCorpus(f, readFileSync(join(dir, f), "latin1")));
}
