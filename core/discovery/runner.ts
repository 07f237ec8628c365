/**
 * One pool's discovery: consumes a source's backend lists (async iterable or subscription) and
 * applies each as the pool's membership: new entries join (health-checked first when checks are
 * on), vanished ones drain, a changed weight is applied. What cannot be trusted keeps the last
 * good list: a list with no valid entry, a throw, and an empty list, unless the source keeps
 * answering empty for `empty_after` (then the pool empties: a service scaled to zero, a name
 * gone for good). After a throw or an end the source is created again with backoff. Each outcome
 * is counted (`fulcrum_discovery_updates_total`).
 */
import type { Logger } from "@logtape/logtape";
import type { DiscoveredBackend, DiscoverySource } from "../plugins/api.ts";
import type { FailureReporter } from "../plugins/isolate.ts";
import type { BackendConfig } from "../config/schema.ts";
import type { backendSchema as BackendSchema } from "../config/pool-schema.ts";
import { backendId } from "../config/source.ts";
import type { Clock, Timer } from "../lib/clock.ts";
import type { Backend, Pool, PoolDiscovery } from "../pool/pool.ts";

let backendSchema: typeof BackendSchema | undefined;

/** How a list was received; the `result` label of `fulcrum_discovery_updates_total`. */
export type UpdateResult = "applied" | "unchanged" | "empty" | "invalid" | "error";

export interface RunnerOptions {
  /** Create the source again (after a throw or an end); the first one is passed to the constructor. */
  create: () => DiscoverySource;
  /** A backend from a discovered entry (the pool's keepalive and TLS settings). */
  backend: (config: BackendConfig) => Backend;
  log: Logger;
  clock: Clock;
  /** Aborted by {@link DiscoveryRunner.stop}; the source's `api.signal`. */
  controller: AbortController;
  /** A user plugin's failures also count as plugin errors; undefined for the built-in dns. */
  failures?: FailureReporter | undefined;
  /** How long start-up waits for the first list before serving without it. */
  startWaitMs?: number;
  /** The runner this one replaces (a reload): its members' discovered weights carry over. */
  previous?: DiscoveryRunner | undefined;
  /** After membership or weights changed (the primary of workers tells them). */
  onChange?: ((pool: Pool) => void) | undefined;
  /**
   * An empty list empties the pool once the source has answered nothing but empty lists for this
   * long (0: at once); undefined: never (the last good list stays).
   */
  emptyAfterMs?: number | undefined;
}

/** Backoff after a failure: 1s, 2s, 4s … up to 30s; reset by a good list. */
const backoff = (n: number) => Math.min(30_000, 1_000 * 2 ** Math.min(n, 5));
const START_WAIT_MS = 5_000;

export class DiscoveryRunner implements PoolDiscovery {
  readonly counts: Record<UpdateResult, number>;
  #first: DiscoverySource | undefined;
  #started: Promise<void> | undefined;
  #ready: (() => void) | undefined;
  #stopped = false;
  #iterator: AsyncIterator<readonly DiscoveredBackend[]> | undefined;
  #unsubscribe: (() => void) | undefined;
  #timer: Timer | undefined;
  /** Set while empty answers count down to emptying the pool. */
  #emptyTimer: Timer | undefined;
  /**
   * When the source first answered with an empty list since its last list with backends (clock
   * time); carried across a reload, so that reloads do not put off emptying the pool.
   */
  emptySince: number | undefined;
  /** The weight each member had in the last list, to tell a discovered change from an operator's. */
  readonly weights: Map<Backend, number>;
  /** Keeping the last good list since this problem: logged once, and again when it clears. */
  #degraded: string | undefined;

  constructor(readonly pool: Pool, first: DiscoverySource, private readonly o: RunnerOptions) {
    this.#first = first;
    this.weights = o.previous?.weights ?? new Map();
    // Carried across a reload: counters must not go back.
    this.counts = o.previous?.counts ?? { applied: 0, unchanged: 0, empty: 0, invalid: 0, error: 0 };
    this.emptySince = o.previous?.emptySince;
  }

  start(): Promise<void> {
    this.#started ??= new Promise<void>((resolve) => {
      this.#ready = resolve;
      const t = setTimeout(() => {
        if (this.#ready === undefined) return;
        this.o.log.warning("discovery for pool {pool} gave no list within {ms}ms; serving without it until it does", {
          pool: this.pool.name,
          ms: this.o.startWaitMs ?? START_WAIT_MS,
        });
        this.#settle();
      }, this.o.startWaitMs ?? START_WAIT_MS);
      (t as { unref?: () => void }).unref?.();
      void this.#run();
    });
    return this.#started;
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.o.controller.abort();
    if (this.#timer !== undefined) this.o.clock.clearTimeout(this.#timer);
    this.#cancelEmpty();
    this.#unsubscribeSafely();
    // Ends a generator suspended at a yield; one awaiting I/O ends when its signal aborts it.
    void this.#iterator?.return?.()?.catch(() => {});
    this.#settle();
  }

  sourceWeight(b: Backend): number | undefined {
    return this.weights.get(b);
  }

  follow(members: readonly BackendConfig[]): void {
    // Logged once, by the primary.
    this.#apply(new Map(members.map((c) => [backendId(c), c])), "debug");
  }

  /** Call the plugin's stop function once; what it throws is the plugin's failure, not ours. */
  #unsubscribeSafely(): void {
    const stop = this.#unsubscribe;
    this.#unsubscribe = undefined;
    try {
      stop?.();
    } catch (e) {
      this.o.failures?.report("discovery stop function threw", e);
    }
  }

  #settle(): void {
    const r = this.#ready;
    this.#ready = undefined;
    r?.();
  }

  async #run(): Promise<void> {
    // The schema (zod) is loaded by the process that runs a source, not by every worker.
    backendSchema ??= (await import("../config/pool-schema.ts")).backendSchema;
    let failures = 0;
    while (!this.#stopped) {
      let why: string;
      try {
        const source = this.#first ?? this.o.create();
        this.#first = undefined;
        await this.#consume(source, () => (failures = 0));
        if (this.#stopped) return;
        why = "the source ended";
        this.counts.error++;
        this.#cancelEmpty(why);
        this.o.failures?.report("discovery ended", why);
      } catch (e) {
        if (this.#stopped) return;
        why = e instanceof Error ? e.message : String(e);
        this.counts.error++;
        this.#cancelEmpty(why);
        this.o.failures?.report("discovery failed", e);
      }
      this.#degrade(`${why}; trying again in ${backoff(failures) / 1000}s`);
      this.#settle();
      await new Promise<void>((r) => (this.#timer = this.o.clock.setTimeout(r, backoff(failures++))));
    }
  }

  /** Read lists until the source ends (resolves) or fails (rejects). */
  #consume(source: DiscoverySource, good: () => void): Promise<void> {
    const receive = (list: unknown) => {
      if (this.#stopped) return;
      if (this.#receive(list)) good();
    };
    if (Symbol.asyncIterator in source) {
      const it = source[Symbol.asyncIterator]();
      this.#iterator = it;
      return (async () => {
        for (;;) {
          const r = await it.next();
          if (r.done || this.#stopped) return;
          receive(r.value);
        }
      })();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => resolve();
      this.o.controller.signal.addEventListener("abort", onAbort, { once: true });
      let failed = false;
      const stop = source.subscribe(receive, (e) => {
        failed = true;
        this.o.controller.signal.removeEventListener("abort", onAbort);
        this.#unsubscribeSafely();
        reject(e);
      });
      this.#unsubscribe = typeof stop === "function" ? stop : undefined;
      // fail() called before subscribe() returned: stop it now.
      if (failed) this.#unsubscribeSafely();
    });
  }

  /** Apply one list; true when it was usable (applied or unchanged). */
  #receive(list: unknown): boolean {
    const name = this.pool.name;
    if (!Array.isArray(list)) {
      this.#cancelEmpty("the source gave something that is not a list");
      this.counts.invalid++;
      this.o.failures?.report("discovery gave something that is not a list", typeof list);
      this.#degrade(`the source gave ${list === null ? "null" : typeof list}, not a list of backends`);
      return false;
    }
    const configs = new Map<string, BackendConfig>();
    const problems: string[] = [];
    list.forEach((entry, i) => {
      const parsed = backendSchema!.safeParse(entry);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        problems.push(`[${i}]${issue.path.map((p) => `.${String(p)}`).join("")}: ${issue.message}, got ${JSON.stringify(entry)}`);
        return;
      }
      const id = backendId(parsed.data);
      if (configs.has(id)) problems.push(`[${i}]: a second backend with id ${id}`);
      else configs.set(id, parsed.data);
    });
    if (problems.length) {
      this.o.log.warning("discovery for pool {pool}: entries skipped: {problems}", { pool: name, problems: problems.join("; ") });
    }
    if (configs.size === 0) {
      if (list.length) {
        this.counts.invalid++;
        this.#cancelEmpty("no valid entry in the list");
        this.#degrade("no valid entry in the list");
      } else {
        this.counts.empty++;
        this.#empty();
      }
      this.#settle();
      return false;
    }
    this.#cancelEmpty();
    this.emptySince = undefined;
    const changed = this.#apply(configs);
    if (changed) this.counts.applied++;
    else this.counts.unchanged++;
    if (this.#degraded !== undefined) {
      this.o.log.info("discovery for pool {pool} works again", { pool: name, backends: configs.size });
      this.#degraded = undefined;
    }
    this.#settle();
    return true;
  }

  #apply(configs: Map<string, BackendConfig>, level: "info" | "debug" = "info"): boolean {
    const pool = this.pool;
    const joined: string[] = [];
    const left: string[] = [];
    let reweighted = false;
    for (const b of [...pool.backends]) {
      const c = configs.get(b.id);
      if (c !== undefined && c.url === b.url) continue;
      pool.removeBackend(b);
      this.weights.delete(b);
      left.push(b.id);
    }
    for (const [id, c] of configs) {
      const b = pool.backends.find((x) => x.id === id);
      if (b === undefined) {
        const nb = this.o.backend(c);
        this.weights.set(nb, c.weight);
        pool.addBackend(nb);
        joined.push(id);
        continue;
      }
      // A weight the list changed wins; one an operator set stays while the list keeps its own.
      const before = this.weights.get(b);
      if (before !== c.weight) {
        if (b.weight !== c.weight) reweighted = true;
        b.weight = c.weight;
        this.weights.set(b, c.weight);
      }
      if (JSON.stringify(b.labels) !== JSON.stringify(c.labels)) b.labels = Object.freeze({ ...c.labels });
    }
    if (reweighted) pool.refresh(true);
    if (joined.length || left.length) {
      this.o.log[level]("pool {pool} membership from discovery: {joined} joined, {left} leaving", {
        pool: pool.name,
        joined: joined.join(", ") || "none",
        left: left.join(", ") || "none",
        backends: pool.backends.length,
      });
    }
    const changed = joined.length > 0 || left.length > 0 || reweighted;
    if (changed) this.o.onChange?.(pool);
    return changed;
  }

  /**
   * An empty answer: keep the last good list, or count down to emptying the pool from the first
   * empty answer since the last list with backends (failures in between stop the timer but do not
   * reset the count: the pool empties at an empty answer once `empty_after` has passed, as
   * HAProxy's `hold nx` counts from the last valid resolution).
   */
  #empty(): void {
    const after = this.o.emptyAfterMs;
    if (this.pool.backends.length === 0) return;
    if (after === undefined) return this.#degrade("an empty list");
    const now = this.o.clock.now();
    this.emptySince ??= now;
    const left = after - (now - this.emptySince);
    if (left <= 0) return this.#emptyPool(now);
    if (this.#emptyTimer !== undefined) return;
    this.o.log.warning("discovery for pool {pool}: an empty list; the pool empties in {seconds}s unless the source lists backends", {
      pool: this.pool.name,
      seconds: left / 1000,
      backends: this.pool.backends.length,
    });
    this.#degraded = "an empty list";
    this.#emptyTimer = this.o.clock.setTimeout(() => {
      this.#emptyTimer = undefined;
      this.#emptyPool(this.o.clock.now());
    }, left);
  }

  #emptyPool(now: number): void {
    if (this.#stopped || this.pool.backends.length === 0) return;
    this.o.log.warning("discovery for pool {pool}: no backends listed for {seconds}s; the pool is emptied", {
      pool: this.pool.name,
      seconds: (now - (this.emptySince ?? now)) / 1000,
      backends: this.pool.backends.length,
    });
    this.#degraded = undefined;
    this.counts.applied++;
    this.#apply(new Map());
  }

  /** A list with backends (no `why`) or a failure (`why`): no emptying until the next empty answer. */
  #cancelEmpty(why?: string): void {
    if (this.#emptyTimer === undefined) return;
    this.o.clock.clearTimeout(this.#emptyTimer);
    this.#emptyTimer = undefined;
    if (why !== undefined && !this.#stopped) {
      this.o.log.info("discovery for pool {pool}: {why}; the pool is not emptied while the source fails", { pool: this.pool.name, why });
    }
  }

  /** Keep the last good list; log when this starts (not on every repeat). */
  #degrade(why: string): void {
    if (this.#stopped) return;
    if (this.#degraded === undefined) {
      this.o.log.warning("discovery for pool {pool}: {why}; keeping the last good list ({backends} backends)", {
        pool: this.pool.name,
        why,
        backends: this.pool.backends.length,
      });
    }
    this.#degraded = why;
  }
}
