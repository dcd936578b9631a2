/**
 * Dynamic batching: requests take a slot in a bounded queue when they arrive
 * (so decoding counts against it), join the queue once decoded, and leave it
 * in batches of up to `maxBatch`, started as soon as the model is free and
 * either the batch is full or its oldest request has waited `maxWaitMs`.
 * One batch runs at a time per batcher, so requests pile up into the next
 * batch while the model computes.
 */

import type { PhaseLock } from './phase-lock';

export interface BatcherOptions {
  maxBatch: number;
  maxWaitMs: number;
  /** Requests admitted at once: decoding, queued or computing. */
  capacity: number;
  /**
   * After a batch of k, how long at most the next one waits for k requests
   * (default 0): clients answered together come back together, and one batch
   * for all of them beats two alternating half-batches in latency. The wait
   * ends early once requests stop arriving for max(maxWaitMs, 10 ms).
   */
  lingerMs?: number;
  /** When given, batches run in its 'compute' phase; the batch is formed once the phase begins. */
  lock?: PhaseLock;
}

/** Runs one batch; resolves to one output per input, in order. */
export type BatchRunner<I, O> = (inputs: I[]) => Promise<O[]>;

export class QueueFullError extends Error {
  constructor(readonly retryAfterS: number) {
    super(`the queue is full; retry in ${retryAfterS} s`);
    this.name = 'QueueFullError';
  }
}

export class RequestTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`the request did not finish within ${timeoutMs} ms`);
    this.name = 'RequestTimeoutError';
  }
}

/** A queue slot held by one request until it is answered (or its decoding fails). */
export interface Slot {
  release(): void;
}

interface Pending<I, O> {
  input: I;
  enqueuedAt: number;
  settled: boolean;
  timer: NodeJS.Timeout;
  resolve(o: O): void;
  reject(e: Error): void;
}

export interface BatchObserver {
  onBatch?(size: number, seconds: number): void;
}

export class DynamicBatcher<I, O> {
  private admitted = 0;
  private queue: Pending<I, O>[] = [];
  private running = false;
  private wake: NodeJS.Timeout | null = null;
  private idleWaiters: (() => void)[] = [];
  /** Mean seconds per image of recent batches (for Retry-After). */
  private secondsPerImage = 0;
  private lastBatchSize = 0;
  private lastFinishedAt = 0;
  private lastAdmitAt = 0;
  private lastSubmitAt = 0;

  constructor(private readonly options: BatcherOptions, private readonly runner: BatchRunner<I, O>, private readonly observer: BatchObserver = {}) {
    const { maxBatch, maxWaitMs, capacity } = options;
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new RangeError(`maxBatch must be an integer >= 1, got ${maxBatch}`);
    if (!(maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be >= 0, got ${maxWaitMs}`);
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new RangeError(`capacity must be an integer >= 1, got ${capacity}`);
  }

  /** Requests holding a slot. */
  get depth(): number {
    return this.admitted;
  }

  get saturated(): boolean {
    return this.admitted >= this.options.capacity;
  }

  /** Takes a slot, or throws QueueFullError with a retry estimate when none is free. */
  admit(): Slot {
    if (this.saturated) {
      const perImage = this.secondsPerImage || 0.05;
      throw new QueueFullError(Math.max(1, Math.ceil(this.admitted * perImage)));
    }
    this.admitted += 1;
    this.lastAdmitAt = performance.now();
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.admitted -= 1;
        this.notifyIdle();
        this.pump();  // the batch may have been waiting for this request
      },
    };
  }

  /**
   * Queues an input for the next batch; settles with its output, or with
   * RequestTimeoutError once `timeoutMs` has passed. The slot is released
   * when the request settles.
   */
  submit(slot: Slot, input: I, timeoutMs: number): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      const item: Pending<I, O> = {
        input,
        enqueuedAt: performance.now(),
        settled: false,
        timer: setTimeout(() => {
          const i = this.queue.indexOf(item);
          if (i >= 0) this.queue.splice(i, 1);
          item.reject(new RequestTimeoutError(timeoutMs));
        }, Math.max(0, timeoutMs)),
        resolve: (o) => {
          if (item.settled) return;
          item.settled = true;
          clearTimeout(item.timer);
          slot.release();
          resolve(o);
        },
        reject: (e) => {
          if (item.settled) return;
          item.settled = true;
          clearTimeout(item.timer);
          slot.release();
          reject(e);
        },
      };
      this.queue.push(item);
      this.lastSubmitAt = item.enqueuedAt;
      this.pump();
    });
  }

  /** Resolves once no request holds a slot and no batch runs (one whose requests timed out may). */
  idle(): Promise<void> {
    return this.admitted === 0 && !this.running ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  private notifyIdle(): void {
    if (this.admitted === 0 && !this.running) for (const w of this.idleWaiters.splice(0)) w();
  }

  private pump(): void {
    if (this.running || !this.queue.length) return;
    const now = performance.now();
    const { maxBatch, maxWaitMs, lingerMs = 0 } = this.options;
    const n = this.queue.length;
    // Full: go. Else the oldest waits maxWaitMs for company, and after a batch
    // of k the next one also waits (up to lingerMs from its end) for k requests,
    // and for every admitted request still decoding: the clients it answered
    // are likely on their way back, and one left out would wait a whole batch.
    // A request still decoding is sure to come (its submit or release pumps
    // again), so the quiet window only opens once none is: on a busy machine
    // decodes stall the event loop for longer than the window.
    const waitLeft = maxWaitMs - (now - this.queue[0].enqueuedAt);
    const expected = Math.min(maxBatch, Math.max(this.lastBatchSize, this.admitted));
    const decoding = this.admitted - n;
    const lingerEnd = this.lastFinishedAt + lingerMs;
    const quietEnd = decoding > 0 ? lingerEnd : Math.max(this.lastFinishedAt, this.lastAdmitAt, this.lastSubmitAt) + Math.max(maxWaitMs, 10);
    const lingerLeft = n >= expected ? 0 : Math.min(lingerEnd, quietEnd) - now;
    const delay = n >= maxBatch ? 0 : Math.max(waitLeft, lingerLeft);
    if (this.wake) {
      clearTimeout(this.wake);
      this.wake = null;
    }
    if (delay > 0) {
      this.wake = setTimeout(() => {
        this.wake = null;
        this.pump();
      }, delay);
      return;
    }
    this.running = true;
    void this.launch().finally(() => {
      this.running = false;
      this.pump();
      this.notifyIdle();
    });
  }

  private async launch(): Promise<void> {
    const release = this.options.lock ? await this.options.lock.acquire('compute') : null;
    try {
      // Formed now: requests decoded while the phase was changing join this batch.
      const batch = this.queue.splice(0, this.options.maxBatch);
      if (batch.length) await this.runBatch(batch);
      this.lastBatchSize = batch.length;
    } finally {
      this.lastFinishedAt = performance.now();
      release?.();
    }
  }

  private async runBatch(batch: Pending<I, O>[]): Promise<void> {
    const start = performance.now();
    try {
      const outputs = await this.runner(batch.map((p) => p.input));
      batch.forEach((p, i) => p.resolve(outputs[i]));
    } catch (err) {
      if (batch.length === 1) {
        batch[0].reject(err as Error);
      } else {
        // Whatever failed the batch fails only the requests that cause it: run them one by one.
        for (const p of batch) {
          if (p.settled) continue;
          try {
            p.resolve((await this.runner([p.input]))[0]);
          } catch (e) {
            p.reject(e as Error);
          }
        }
      }
    }
    const seconds = (performance.now() - start) / 1000;
    this.secondsPerImage = this.secondsPerImage ? 0.8 * this.secondsPerImage + 0.2 * (seconds / batch.length) : seconds / batch.length;
    this.observer.onBatch?.(batch.length, seconds);
  }
}
