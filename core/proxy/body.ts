/** Request bodies under limits.client_body_timeout: buffered for a retry, or streamed with an idle timeout. */

/** The client stopped sending its request body: answered 408, as nginx's client_body_timeout does. */
export class BodyTimeout extends Error {
  constructor(ms: number) {
    super(`no request body data for ${ms}ms`);
    this.name = "BodyTimeout";
  }
}

/** Read one chunk, or fail with {@link BodyTimeout} if none comes within `ms`. */
async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, ms: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new BodyTimeout(ms)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The whole body, bounded by an idle timeout between chunks. */
export async function bufferBody(body: ReadableStream<Uint8Array>, ms: number): Promise<Uint8Array> {
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await readWithin(reader, ms);
      if (done) break;
      parts.push(value);
      size += value.byteLength;
    }
  } catch (e) {
    reader.cancel(e).catch(() => {});
    throw e;
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** A streamed body that errors with {@link BodyTimeout} when the client stalls (pulled lazily). */
export function withBodyTimeout(body: ReadableStream<Uint8Array>, ms: number, onTimeout: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await readWithin(reader, ms);
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (e) {
          if (e instanceof BodyTimeout) onTimeout();
          reader.cancel(e).catch(() => {});
          controller.error(e);
        }
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}
