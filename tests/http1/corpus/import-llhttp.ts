/**
 * Writes tests/http1/corpus/llhttp-*.md from llhttp's own request tests (test/request/*.md in
 * the nodejs/llhttp repository): every ```http input, with its heading path and its file:line as
 * the origin. The expected logs are left out: the differential test's oracle is Node's parser
 * itself, not llhttp's expectations. Lenient-mode tests are kept (their inputs are what strict
 * mode refuses); duplicate inputs (pausing.md repeats sample requests) are kept once.
 *
 * Most of llhttp's requests have no Host header, which Node's server and Fulcrum both refuse
 * (RFC 9112 §3.2) before the framing under test is reached: `Host: x` is added to each HTTP/1.1
 * request head without one (before its empty line), and the case says so (a missing Host has
 * cases of its own in requests.md).
 *
 *   bun tests/http1/corpus/import-llhttp.ts [path to a git dir of llhttp] [commit]
 *
 * (default: the bare mirror at /work/.mirror/nodejs+llhttp/repo, HEAD).
 */
import { Buffer } from "node:buffer";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CORPUS_DIR, encode } from "../differential/corpus.ts";

const gitDir = process.argv[2] ?? "/work/.mirror/nodejs+llhttp/repo";
const rev = process.argv[3] ?? "HEAD";
const git = (...args: string[]) => execFileSync("git", ["--git-dir", gitDir, ...args], { encoding: "latin1", maxBuffer: 1 << 26 });
const commit = git("rev-parse", rev).trim();
const files = git("ls-tree", "-r", "--name-only", commit, "test/request/").split("\n").filter((f) => f.endsWith(".md"));

/** llhttp's test/md-test.ts input transformation, as it is (greedy `\x`, octal escapes). */
function llhttpInput(block: string): string {
  let input = block.replace(/\n$/, "");
  input = input.replace(/\\(\r\n|\r|\n)/g, "");
  input = input.replace(/\r\n|\r|\n/g, "\r\n");
  input = input.replace(/\\r/g, "\r");
  input = input.replace(/\\n/g, "\n");
  input = input.replace(/\\t/g, "\t");
  input = input.replace(/\\f/g, "\f");
  input = input.replace(/\\x([0-9a-fA-F]+)/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  input = input.replace(/\\([0-7]{1,3})/g, (_, digits: string) => String.fromCharCode(parseInt(digits, 8)));
  if (/\$\{/.test(input)) throw new Error("inline JavaScript in an input: not supported");
  return input;
}

const REQUEST_LINE = /(^|\r\n)[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP\/1\.1\r\n/g;

/** `Host: x` added to each HTTP/1.1 head without a Host line (before its empty line); undefined if none was added. */
function withHost(input: string): string | undefined {
  let out = "";
  let from = 0;
  let added = false;
  for (const m of input.matchAll(REQUEST_LINE)) {
    const lineEnd = m.index! + m[0].length;
    if (lineEnd <= from) continue;
    const headEnd = input.indexOf("\r\n\r\n", lineEnd - 2);
    if (headEnd < 0) continue;
    const head = input.slice(lineEnd, headEnd + 2);
    if (/(^|\r\n)host[ \t]*:/i.test(head)) continue;
    out += input.slice(from, headEnd + 2) + "Host: x\r\n";
    from = headEnd + 2;
    added = true;
  }
  return added ? out + input.slice(from) : undefined;
}

const seen = new Set<string>();
let total = 0;
for (const file of files) {
  const text = git("show", `${commit}:${file}`);
  const lines = text.split("\n");
  const path: string[] = [];
  let meta = "";
  const out: string[] = [];
  const base = file.replace(/^test\/request\//, "").replace(/\.md$/, "");
  out.push(`# llhttp: ${file}\n`);
  out.push(
    `Imported by import-llhttp.ts from nodejs/llhttp@${commit.slice(0, 12)} (${file}): each request input with its\n` +
      `heading path and the line of its block. The expected logs are not copied: Node's parser is the oracle.\n`,
  );
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^(#{1,6}) (.*)$/.exec(line);
    if (h) {
      path.length = h[1]!.length - 1;
      path.push(h[2]!.trim());
      continue;
    }
    const m = /^<!-- meta=(.*) -->$/.exec(line.trim());
    if (m) {
      meta = m[1]!;
      continue;
    }
    if (line.trim() !== "```http") continue;
    let end = i + 1;
    while (lines[end]!.trim() !== "```") end++;
    const input = llhttpInput(lines.slice(i + 1, end).map((l) => `${l}\n`).join(""));
    const type = (JSON.parse(meta || "{}") as { type?: string }).type ?? "request";
    const hosted = withHost(input);
    const bytes = hosted ?? input;
    const at = i + 1;
    i = end;
    if (seen.has(bytes)) continue;
    seen.add(bytes);
    total++;
    out.push(`## ${path.slice(1).join(" / ")}\n`);
    out.push(`origin: llhttp ${file}:${at}${type === "request" ? "" : ` (llhttp mode ${type})`}`);
    if (hosted !== undefined) out.push("note: `Host: x` added by the importer");
    out.push("\n```http\n" + encode(Buffer.from(bytes, "latin1")) + "```\n");
    meta = "";
  }
  writeFileSync(join(CORPUS_DIR, `llhttp-${base}.md`), out.join("\n"));
}
console.log(`${total} cases from ${files.length} files of nodejs/llhttp@${commit.slice(0, 12)}`);
