/**
 * Content encoders for the `compress` middleware: the runtime's zlib (node:zlib, which Bun and
 * Deno both provide) as a pull-driven web stream. Pulled by the client's reads, so a slow client
 * holds back reading from the backend (bounded memory, no whole-body buffering); each piece of
 * the backend's body is flushed through the encoder (Z_SYNC_FLUSH), so a body that comes in pieces
 * with pauses (a progress stream, a long poll) reaches the client piece by piece.
 */
import type * as zlib from "node:zlib";

/** The content codings the middleware can produce, by their `Content-Encoding` token. */
export type Encoding = "zstd" | "br" | "gzip" | "deflate";
export const ENCODINGS: readonly Encoding[] = ["zstd", "br", "gzip", "deflate"];

/** Levels: gzip and deflate 1–9, brotli 0–11, zstd 1–19 (22 with ultra; capped at 19 here). */
export const LEVEL_RANGE: Readonly<Record<Encoding, readonly [number, number]>> = {
  gzip: [1, 9],
  deflate: [1, 9],
  br: [0, 11],
  zstd: [1, 19],
};

/**
 * Defaults: gzip 6 (zlib's own default; nginx's is 1, which saves ~10% less on text at ~half the
 * CPU), brotli 4 (quality 11, brotli's default, is for precompressed files, ~50× slower), zstd 3
 * (zstd's default).
 */
export const DEFAULT_LEVELS: Readonly<Record<Encoding, number>> = { gzip: 6, deflate: 6, br: 4, zstd: 3 };

type Compressor = zlib.Gzip | zlib.Deflate | zlib.BrotliCompress | zlib.ZstdCompress;

// node:zlib (~10 ms of CPU to load) for the first route with compress, not at every start (the
// middleware is registered at every start).
const nodeZlib = () => process.getBuiltinModule("node:zlib") as typeof zlib;

function create(encoding: Encoding, level: number): Compressor {
  const zlib = nodeZlib();
  switch (encoding) {
    case "gzip":
      return zlib.createGzip({ level });
    case "deflate":
      return zlib.createDeflate({ level });
    case "br":
      return zlib.createBrotliCompress({
        params: { [zlib.constants.BROTLI_PARAM_QUALITY]: level, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT },
      });
    case "zstd":
      return zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  }
}

/** Whether this runtime's zlib can make `encoding` (zstd needs a recent one); checked once at start. */
export function available(encoding: Encoding): boolean {
  try {
    create(encoding, DEFAULT_LEVELS[encoding]).destroy();
    return true;
  } catch {
    return false;
  }
}

/**
 * `body` encoded. `head` are pieces already read from `reader` (the middleware reads up to
 * min_size to decide); the rest is read from `reader` as the client pulls.
 */
export function encodeStream(
  encoding: Encoding,
  level: number,
  head: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  const z = create(encoding, level);
  const out: Uint8Array[] = [];
  let failure: Error | undefined;
  z.on("data", (d: Uint8Array) => out.push(d));
  z.on("error", (e: Error) => (failure = e));
  const writeFlushed = (chunk: Uint8Array) =>
    new Promise<void>((resolve) => {
      z.write(chunk);
      z.flush(() => resolve());
    });
  const end = () =>
    new Promise<void>((resolve) => {
      z.once("end", resolve);
      z.once("error", () => resolve());
      z.end();
    });
  let next = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        for (;;) {
          let chunk: Uint8Array | undefined;
          if (next < head.length) chunk = head[next++];
          else {
            let r: Awaited<ReturnType<typeof reader.read>>;
            try {
              r = await reader.read();
            } catch (e) {
              z.destroy();
              throw e;
            }
            if (r.done) {
              await end();
              if (failure) return c.error(failure);
              for (const o of out) c.enqueue(o);
              out.length = 0;
              return c.close();
            }
            chunk = r.value;
          }
          if (chunk!.length === 0) continue;
          await writeFlushed(chunk!);
          if (failure) {
            reader.cancel(failure).catch(() => {});
            return c.error(failure);
          }
          if (out.length === 0) continue;
          for (const o of out) c.enqueue(o);
          out.length = 0;
          return;
        }
      },
      cancel(reason) {
        z.destroy();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
