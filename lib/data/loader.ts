/**
 * Batches of a dataset for training: a seeded per-epoch order, decoding and
 * augmentation in worker threads, and a queue of batches prefetched while the
 * consumer computes. Epoch e's order depends only on (seed, e) and every
 * sample's augmentation only on (seed, e, index), so batches are the same for
 * any worker count, and an epoch can be resumed at any batch.
 */
import '../polyfill';
import * as os from 'os';
import { ArgumentError } from '../errors';
import { BatchJob, buildBatch, STREAM_ORDER, WorkerSetup } from './batch';
import { checkMixup, MixupOptions } from './mixup';
import { WorkerPool } from './pool';
import { Rng } from './rng';
import { DatasetSpec, ResolvedDataset, resolveDataset, sampleShape, TransformSpec } from './spec';

export interface DataLoaderOptions {
  /** A descriptor, or an object that gives one (ImageFolder); a 'fashion-mnist' one is read (blocking) when the loader is made. */
  dataset: DatasetSpec | { describe(): DatasetSpec };
  transform: TransformSpec;
  batchSize: number;
  /** Reshuffle every epoch (default true); false keeps the dataset order. */
  shuffle?: boolean;
  /** Drop the last batch when it is short (default false). */
  dropLast?: boolean;
  /** Seeds the order, the augmentation and mixup (default 0). */
  seed?: number;
  /** Worker threads (default: the available cores minus one, at least 1); 0 builds batches in the calling thread. */
  workers?: number;
  /** Batches requested ahead of the consumer (default 2 per worker). */
  prefetch?: number;
  /** Mixup/CutMix and label smoothing of each batch (in the workers); batches then carry `targets`. numClasses defaults to the dataset's. */
  mixup?: Omit<MixupOptions, 'numClasses'> & { numClasses?: number };
}

export interface Batch {
  /** [B, C, H, W] floats. */
  images: Float32Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  /** Dataset index of each row. */
  indices: Int32Array;
  /** [B, numClasses] soft targets, with the mixup option. */
  targets?: Float32Array;
  epoch: number;
  /** Position of this batch in its epoch (what resuming starts from). */
  batch: number;
}

export interface EpochOptions {
  /** Skip the batches before this position (resume an interrupted epoch). */
  startBatch?: number;
}

function checkCount(what: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min) throw new ArgumentError(`DataLoader: ${what} must be an integer >= ${min}, got ${v}`);
  return v;
}

export class DataLoader {
  readonly numSamples: number;
  readonly numBatches: number;
  readonly numClasses: number;
  readonly batchSize: number;
  /** [C, H, W] of one sample. */
  readonly sampleShape: [number, number, number];
  readonly seed: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly workers: number;
  readonly prefetch: number;
  private readonly data: ResolvedDataset;
  private readonly setup: WorkerSetup;
  private readonly pool: WorkerPool | null;
  private nextId = 0;
  private closed = false;

  constructor(options: DataLoaderOptions) {
    const spec = 'describe' in options.dataset ? options.dataset.describe() : options.dataset;
    this.batchSize = checkCount('batchSize', options.batchSize, 1);
    this.seed = checkCount('seed', options.seed ?? 0, 0);
    this.workers = checkCount('workers', options.workers ?? Math.max(1, os.availableParallelism() - 1), 0);
    this.prefetch = checkCount('prefetch', options.prefetch ?? 2 * Math.max(1, this.workers), 1);
    this.shuffle = options.shuffle ?? true;
    this.dropLast = options.dropLast ?? false;
    this.data = resolveDataset(spec);
    this.sampleShape = sampleShape(this.data.source, options.transform);
    this.numSamples = this.data.count;
    this.numClasses = this.data.numClasses;
    this.numBatches = this.dropLast ? Math.floor(this.numSamples / this.batchSize) : Math.ceil(this.numSamples / this.batchSize);
    const mixup = options.mixup ? { ...options.mixup, numClasses: options.mixup.numClasses ?? this.numClasses } : undefined;
    if (mixup) checkMixup(mixup);
    this.setup = { source: this.data.source, transform: options.transform, sampleShape: this.sampleShape, seed: this.seed, mixup };
    this.pool = this.workers > 0 ? new WorkerPool(this.workers, this.setup) : null;
  }

  /** Dataset indices in epoch `epoch`'s order. */
  order(epoch: number): Int32Array {
    checkCount('epoch', epoch, 0);
    const order = Int32Array.from({ length: this.numSamples }, (_, i) => i);
    return this.shuffle ? new Rng(this.seed, STREAM_ORDER, epoch).shuffle(order) : order;
  }

  /** The batches of one epoch, from `startBatch` on, prefetched in the workers. */
  async *epoch(epoch: number, options: EpochOptions = {}): AsyncGenerator<Batch, void, undefined> {
    if (this.closed) throw new ArgumentError('DataLoader: used after close()');
    const start = options.startBatch ?? 0;
    if (!Number.isSafeInteger(start) || start < 0 || start > this.numBatches) {
      throw new ArgumentError(`DataLoader: startBatch must be an integer in [0, ${this.numBatches}], got ${start}`);
    }
    const order = this.order(epoch);
    const pending: { id: number; batch: Promise<Batch> }[] = [];
    let next = start;
    const fill = () => {
      while (next < this.numBatches && pending.length < this.prefetch) {
        const r = this.request(epoch, next++, order);
        r.batch.catch(() => {}); // awaited in turn below; this only keeps a later batch's failure from going unhandled meanwhile
        pending.push(r);
      }
    };
    try {
      fill();
      while (pending.length) {
        const batch = await pending.shift()!.batch;
        fill(); // keep the workers busy while the consumer works on this batch
        yield batch;
      }
    } finally {
      // Broken off (or failed): drop this epoch's batches that no worker has started.
      this.pool?.cancel(new Set(pending.map((r) => r.id)));
    }
  }

  /** Worker threads running now: none before the first batch is requested, nor after close(). */
  get activeWorkers(): number {
    return this.pool?.running ?? 0;
  }

  /** Stops the workers. Pending batches are rejected; later epochs throw. */
  async close(): Promise<void> {
    this.closed = true;
    await this.pool?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private request(epoch: number, batch: number, order: Int32Array): { id: number; batch: Promise<Batch> } {
    const from = batch * this.batchSize;
    const indices = order.slice(from, Math.min(from + this.batchSize, this.numSamples));
    const labels = indices.map((i) => this.data.labels[i]);
    const paths = this.data.paths && Array.from(indices, (i) => this.data.paths![i]);
    const job: BatchJob = { id: this.nextId++, epoch, batch, indices, labels, paths };
    const [C, H, W] = this.sampleShape;
    const built = this.pool ? this.pool.run(job) : buildBatch(this.setup, job);
    return {
      id: job.id,
      batch: built.then((r) => ({ images: r.images, shape: [indices.length, C, H, W], labels, indices, targets: r.targets, epoch, batch })),
    };
  }
}
