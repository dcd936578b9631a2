/**
 * A pool of worker threads building batches, one batch per worker at a time.
 * Idle workers are unref'd, so a pool nobody closed does not keep the process alive.
 */
import * as path from 'path';
import { Worker } from 'worker_threads';
import { ArgumentError, DTypeError, FormatError, ShapeError, VisionLlamaError } from '../errors';
import type { BatchImages, BatchJob, WorkerSetup } from './batch';

interface Task {
  job: BatchJob;
  resolve: (r: BatchImages) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  task: Task | null;
  exited: boolean;
}

type WorkerReply = { id: number; images: Float32Array; targets?: Float32Array } | { id: number; error: { name: string; message: string } };

const ERROR_CLASSES: Record<string, new (message: string) => Error> = {
  FormatError, ArgumentError, ShapeError, DTypeError, VisionLlamaError, TypeError, RangeError,
};

/** Errors cross threads as name + message; rebuild the class so callers can test instanceof. */
function reviveError(e: { name: string; message: string }): Error {
  const err = new (ERROR_CLASSES[e.name] ?? Error)(e.message);
  if (!ERROR_CLASSES[e.name] && e.name) err.name = e.name;
  return err;
}

/**
 * Arrays arriving in messages belong to the thread's main realm; a view made
 * here belongs to this module's (they differ under vm contexts such as jest's),
 * so instanceof Float32Array holds for callers. No copy.
 */
function ownRealm(a: Float32Array | undefined): Float32Array | undefined {
  return a && new Float32Array(a.buffer, a.byteOffset, a.length);
}

function startWorker(setup: WorkerSetup): Worker {
  if (path.extname(__filename) === '.ts') {
    // Running from the sources (tests, benches): the worker is TypeScript too, loaded through the require hook.
    const hook = path.join(__dirname, '..', 'register-ts.js');
    const entry = path.join(__dirname, 'worker.ts');
    return new Worker(`require(${JSON.stringify(hook)}); require(${JSON.stringify(entry)});`, { eval: true, workerData: setup });
  }
  return new Worker(path.join(__dirname, 'worker.js'), { workerData: setup });
}

export class WorkerPool {
  private slots: Slot[] = [];
  private queue: Task[] = [];
  private failure: Error | null = null;
  private closed = false;

  constructor(private readonly size: number, private readonly setup: WorkerSetup) {}

  run(job: BatchJob): Promise<BatchImages> {
    if (this.closed) return Promise.reject(new VisionLlamaError('DataLoader: used after close()'));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  /** Drops queued jobs with these ids (those already in a worker run to completion and are ignored). */
  cancel(ids: Set<number>): void {
    const keep: Task[] = [];
    for (const task of this.queue) {
      if (ids.has(task.job.id)) task.reject(new VisionLlamaError(`DataLoader: batch ${task.job.batch} cancelled`));
      else keep.push(task);
    }
    this.queue = keep;
  }

  /** Terminates the workers; batches still pending are rejected. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rejectAll(new VisionLlamaError('DataLoader: closed while batches were pending'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  /** Worker threads started and not yet exited. */
  get running(): number {
    return this.slots.filter((s) => !s.exited).length;
  }

  private start(): void {
    for (let i = 0; i < this.size; ++i) {
      const slot: Slot = { worker: startWorker(this.setup), task: null, exited: false };
      slot.worker.on('message', (msg: WorkerReply) => this.onReply(slot, msg));
      slot.worker.on('error', (err) => this.fail(new VisionLlamaError(`DataLoader worker ${i} failed: ${err.message}`)));
      slot.worker.on('exit', (code) => {
        slot.exited = true;
        if (!this.closed) this.fail(new VisionLlamaError(`DataLoader worker ${i} exited unexpectedly (code ${code})`));
      });
      slot.worker.unref();
      this.slots.push(slot);
    }
  }

  private dispatch(): void {
    if (!this.slots.length) this.start();
    for (const slot of this.slots) {
      if (!this.queue.length) break;
      if (slot.task) continue;
      slot.task = this.queue.shift()!;
      slot.worker.ref();
      slot.worker.postMessage(slot.task.job);
    }
  }

  private onReply(slot: Slot, msg: WorkerReply): void {
    const task = slot.task;
    slot.task = null;
    if (task) {
      if ('error' in msg) task.reject(reviveError(msg.error));
      else task.resolve({ images: ownRealm(msg.images)!, targets: ownRealm(msg.targets) });
    }
    this.dispatch();
    if (!slot.task) slot.worker.unref();
  }

  private rejectAll(err: Error): void {
    for (const slot of this.slots) {
      slot.task?.reject(err);
      slot.task = null;
    }
    for (const task of this.queue.splice(0)) task.reject(err);
  }

  private fail(err: Error): void {
    if (this.failure || this.closed) return;
    this.failure = err;
    this.rejectAll(err);
    for (const s of this.slots) void s.worker.terminate();
  }
}
