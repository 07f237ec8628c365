// The batch span processor for OTLP/protobuf export: the SDK's BatchSpanProcessor, except that a
// span is encoded when it ends and the queue holds its bytes (core/telemetry/otlp/request.ts EncodedSpans).
// Queued span objects cost the request path in garbage collection: at 1.0 sampling on Bun a queue
// of ReadableSpans grew the heap ~0.8 MB per young collection and tripled full collections.
// Everything else follows the SDK's BatchSpanProcessorBase (sdk-trace 3.1): sampled spans only,
// `maxQueueSize` spans waiting at most (more are dropped and counted), an export as soon as
// `maxExportBatchSize` are waiting or `scheduledDelayMillis` after the first, one export at a time
// in steady state, all of them at once on flush, `exportTimeoutMillis` per export, and a shutdown
// that flushes and then shuts the exporter down.
import { type Context, context, diag, TraceFlags } from "@opentelemetry/api";
import { type ExportResult, ExportResultCode, globalErrorHandler, suppressTracing } from "@opentelemetry/core";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace";
import { EncodedSpans } from "./request.ts";

/**
 * What the processor exports to: the OTLP exporter, fed encoded batches. `export` must have
 * encoded the batch (encodeSpansRequest) when it returns: the batch's buffers are then reused.
 */
export interface EncodedSpanExporter {
  export(batch: EncodedSpans, resultCallback: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
}

export interface EncodingBatchOptions {
  exporter: EncodedSpanExporter;
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMillis: number;
  exportTimeoutMillis: number;
  /** Spans lost: `queue_full` when the queue was full, `export_failed` when their export failed. */
  onLost(reason: "queue_full" | "export_failed", count: number): void;
}

export class EncodingBatchSpanProcessor implements SpanProcessor {
  readonly #o: EncodingBatchOptions;
  readonly #maxBatch: number;
  /** Full batches waiting for export, oldest first, and the one being filled. */
  readonly #full: EncodedSpans[] = [];
  #open = new EncodedSpans();
  /** Spans waiting (in #full and #open), the SDK's `_finishedSpans.length`. */
  #queued = 0;
  #exporting = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dropped = 0;
  #shutdown: Promise<void> | undefined;

  constructor(options: EncodingBatchOptions) {
    this.#o = options;
    this.#maxBatch = options.maxExportBatchSize;
    if (this.#maxBatch > options.maxQueueSize) {
      diag.warn(
        "BatchSpanProcessor: maxExportBatchSize must be smaller or equal to maxQueueSize, setting maxExportBatchSize to match maxQueueSize",
      );
      this.#maxBatch = options.maxQueueSize;
    }
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#shutdown !== undefined) return;
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#queued >= this.#o.maxQueueSize) {
      if (this.#dropped++ === 0) diag.debug("maxQueueSize reached, dropping spans");
      this.#o.onLost("queue_full", 1);
      return;
    }
    if (this.#dropped > 0) {
      diag.warn(`Dropped ${this.#dropped} spans because maxQueueSize reached`);
      this.#dropped = 0;
    }
    try {
      this.#open.add(span);
    } catch (e) {
      // A value the encoder cannot write must not fail the request that ended the span.
      this.#o.onLost("export_failed", 1);
      globalErrorHandler(e as Error);
      return;
    }
    this.#queued++;
    if (this.#open.count >= this.#maxBatch) {
      this.#full.push(this.#open);
      this.#open = new EncodedSpans();
    }
    this.#maybeStartTimer();
  }

  forceFlush(): Promise<void> {
    return this.#shutdown ?? this.#flushAll();
  }

  shutdown(): Promise<void> {
    return (this.#shutdown ??= Promise.resolve()
      .then(() => this.#flushAll())
      .then(() => this.#o.exporter.shutdown()));
  }

  /** The oldest waiting batch, taken out of the queue. */
  #take(): EncodedSpans | undefined {
    let batch = this.#full.shift();
    if (batch === undefined) {
      if (this.#open.count === 0) return undefined;
      batch = this.#open;
      this.#open = new EncodedSpans();
    }
    this.#queued -= batch.count;
    return batch;
  }

  #flushAll(): Promise<void> {
    const exports: Promise<void>[] = [];
    for (let i = Math.ceil(this.#queued / this.#maxBatch); i > 0; i--) exports.push(this.#exportOne());
    return Promise.all(exports).then(() => {});
  }

  #exportOne(): Promise<void> {
    this.#clearTimer();
    const batch = this.#take();
    if (batch === undefined) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("Timeout")), this.#o.exportTimeoutMillis);
      let settled = false;
      const failed = (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#o.onLost("export_failed", batch.count);
        reject(error);
      };
      const doExport = () => {
        try {
          this.#o.exporter.export(batch, (result) => {
            if (result.code !== ExportResultCode.SUCCESS)
              return failed(result.error ?? new Error("BatchSpanProcessor: span export failed"));
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            resolve();
          });
        } catch (e) {
          // Encoding the request failed: its spans are lost, and counted.
          failed(e);
        } finally {
          batch.release();
        }
      };
      context.with(suppressTracing(context.active()), () => {
        // As the SDK: a resource still resolving attributes is awaited before it is encoded.
        let pending: Promise<void>[] | undefined;
        for (const g of batch.groups) {
          const r = g.resource;
          if (r.asyncAttributesPending && r.waitForAsyncAttributes) (pending ??= []).push(r.waitForAsyncAttributes());
        }
        if (pending === undefined) doExport();
        else Promise.all(pending).then(doExport, (err) => {
            globalErrorHandler(err);
            failed(err);
            batch.release();
          });
      });
    });
  }

  #maybeStartTimer(): void {
    if (this.#exporting) return;
    if (this.#queued >= this.#maxBatch) return this.#flushOne();
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => this.#flushOne(), this.#o.scheduledDelayMillis);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #flushOne(): void {
    this.#exporting = true;
    this.#exportOne()
      .finally(() => {
        this.#exporting = false;
        if (this.#queued > 0) {
          this.#clearTimer();
          this.#maybeStartTimer();
        }
      })
      .catch((e) => {
        this.#exporting = false;
        globalErrorHandler(e);
      });
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}
