/**
 * Dynamic batching: requests take a slot in a bounded queue when they arrive
 * (so decoding counts against it), join the queue once decoded, and leave it
 * in batches of up to `maxBatch`, started as soon as the model is free and
 * either the batch is full or its oldest request has waited `maxWaitMs`.
 * One batch runs at a time per batcher, so requests pile up into the next
 * batch while the model computes.
 */

export interface BatcherOptions {
  maxBatch: number;
  maxWaitMs: number;
  /** Requests admitted at once: decoding, queued or computing. */
  capacity: number;
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
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.admitted -= 1;
        this.notifyIdle();
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
    const waited = performance.now() - this.queue[0].enqueuedAt;
    if (this.queue.length < this.options.maxBatch && waited < this.options.maxWaitMs) {
      if (!this.wake) {
        this.wake = setTimeout(() => {
          this.wake = null;
          this.pump();
        }, this.options.maxWaitMs - waited);
      }
      return;
    }
    if (this.wake) {
      clearTimeout(this.wake);
      this.wake = null;
    }
    const batch = this.queue.splice(0, this.options.maxBatch);
    this.running = true;
    void this.runBatch(batch).finally(() => {
      this.running = false;
      this.pump();
      this.notifyIdle();
    });
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
