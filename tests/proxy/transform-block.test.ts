/** Response hooks on the direct path keep the backend's header bytes when they only add headers. */
import { describe, expect, test } from "bun:test";
import { editedHead, RequestEdit } from "../../core/proxy/transform.ts";
import type { HeaderBlock } from "../../core/http1/bytes.ts";
import type { Transform } from "../../core/plugins/api.ts";

// Two runs, as a parser leaves them around a dropped line (Connection).
const RAW = "Server: nginx\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nX-Mixed-Case: 1\r\n";
const buf = Buffer.from(RAW, "latin1");
const cut = RAW.indexOf("Connection");
const after = RAW.indexOf("X-Mixed-Case");
const block: HeaderBlock = { buf, runs: [0, cut, after, buf.length], size: cut + buf.length - after, hasDate: false };
const parsed = () => ["server", "nginx", "content-type", "text/plain", "x-mixed-case", "1"];
const edit = {} as RequestEdit;

function run(response: Transform["response"]) {
  return editedHead([{ response }], 1, edit, 200, block, parsed);
}
const text = (h: ReturnType<typeof run>) => Array.isArray(h) ? h : (h as HeaderBlock).buf.toString("latin1", 0, (h as HeaderBlock).size);

describe("editedHead on a backend's header block", () => {
  test("headers the backend did not send are written after its bytes", () => {
    const h = run((res) => {
      res.setHeader("RateLimit", '"default";r=9;t=1');
      res.addHeader("x-request-id", "abc");
    });
    expect(Array.isArray(h)).toBe(false);
    expect(text(h)).toBe(
      'Server: nginx\r\nContent-Type: text/plain\r\nX-Mixed-Case: 1\r\nratelimit: "default";r=9;t=1\r\nx-request-id: abc\r\n',
    );
    expect((h as HeaderBlock).hasDate).toBe(false);
  });

  test("no edit: the block itself", () => {
    expect(run(() => {})).toBe(block);
  });

  test("setting a header the backend sent (any case) replaces it: the edited list", () => {
    expect(run((res) => res.setHeader("x-mixed-case", "2"))).toEqual([
      "server",
      "nginx",
      "content-type",
      "text/plain",
      "x-mixed-case",
      "2",
    ]);
  });

  test("a removal or a read falls back to the list, keeping what was added before", () => {
    expect(run((res) => {
      res.setHeader("x-a", "1");
      res.removeHeader("server");
    })).toEqual(["content-type", "text/plain", "x-mixed-case", "1", "x-a", "1"]);
    let seen: string | undefined;
    expect(run((res) => {
      seen = res.header("content-type");
      res.setHeader("x-b", "2");
    })).toEqual([...parsed(), "x-b", "2"]);
    expect(seen).toBe("text/plain");
  });

  test("a header named like the prefix of one the backend sent is new (server-timing is not server)", () => {
    expect(text(run((res) => res.setHeader("serve", "x")))).toEndWith("serve: x\r\n");
    expect(run((res) => res.setHeader("server", "fulcrum"))).toEqual([
      "content-type",
      "text/plain",
      "x-mixed-case",
      "1",
      "server",
      "fulcrum",
    ]);
  });

  test("a Date added by a hook marks the block as having one", () => {
    expect((run((res) => res.setHeader("date", "Sun, 06 Dec 2026 06:00:00 GMT")) as HeaderBlock).hasDate).toBe(true);
  });
});
