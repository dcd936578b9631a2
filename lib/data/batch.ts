/**
 * Building one batch from its sample indices: what a loader worker runs (or
 * the calling thread, with workers: 0). Randomness comes from per-sample
 * streams (seed, epoch, dataset index) and a per-batch stream for mixup, so a
 * batch does not depend on which worker builds it.
 */
import { ArgumentError, VisionLlamaError } from '../errors';
import { decodeImage } from './decode';
import { mixBatch, MixupOptions } from './mixup';
import { Rng } from './rng';
import type { SourceSetup, TransformSpec } from './spec';
import { augmentGray, decodeTrainImage, normalizeGray } from './transforms';

/** Stream tags: the first key after the seed, so the loader's uses of one seed never share a stream. */
export const STREAM_ORDER = 1;
export const STREAM_SAMPLE = 2;
export const STREAM_MIXUP = 3;

export interface WorkerSetup {
  source: SourceSetup;
  transform: TransformSpec;
  /** [C, H, W] of one sample. */
  sampleShape: [number, number, number];
  seed: number;
  mixup?: MixupOptions;
}

export interface BatchJob {
  id: number;
  epoch: number;
  /** Position of the batch in its epoch. */
  batch: number;
  indices: Int32Array;
  labels: Int32Array;
  /** Image files of the samples (image folders). */
  paths?: string[];
}

export interface BatchImages {
  images: Float32Array;
  targets?: Float32Array;
}

/** Prefixes an error with the sample it came from (keeping its class). */
function sampleError(err: unknown, index: number, path?: string): Error {
  const e = err instanceof Error ? err : new VisionLlamaError(String(err));
  const where = path && !e.message.includes(path) ? `sample ${index} (${path})` : `sample ${index}`;
  e.message = `${where}: ${e.message}`;
  return e;
}

async function loadSample(setup: WorkerSetup, job: BatchJob, row: number, out: Float32Array): Promise<void> {
  const { source, transform: t } = setup;
  const index = job.indices[row];
  const rng = () => new Rng(setup.seed, STREAM_SAMPLE, job.epoch, index);
  if (source.kind === 'arrays') {
    const plane = source.height * source.width;
    const image = source.images.subarray(index * plane, (index + 1) * plane);
    if (t.kind === 'gray-train') augmentGray(image, source.height, source.width, t, rng(), out);
    else if (t.kind === 'gray-eval') normalizeGray(image, t, out);
    else throw new ArgumentError(`transform '${t.kind}' does not apply to grayscale arrays`);
    return;
  }
  const path = job.paths![row];
  if (t.kind === 'rgb-train') out.set(await decodeTrainImage(path, t, rng()));
  else if (t.kind === 'rgb-eval') out.set((await decodeImage(path, t)).data);
  else throw new ArgumentError(`transform '${t.kind}' does not apply to image files`);
}

export async function buildBatch(setup: WorkerSetup, job: BatchJob): Promise<BatchImages> {
  const [C, H, W] = setup.sampleShape;
  const size = C * H * W;
  const B = job.indices.length;
  const images = new Float32Array(B * size);
  await Promise.all(Array.from({ length: B }, async (_, row) => {
    try {
      await loadSample(setup, job, row, images.subarray(row * size, (row + 1) * size));
    } catch (err) {
      throw sampleError(err, job.indices[row], job.paths?.[row]);
    }
  }));
  if (!setup.mixup) return { images };
  const mixed = mixBatch(images, [B, C, H, W], job.labels, setup.mixup, new Rng(setup.seed, STREAM_MIXUP, job.epoch, job.batch), true);
  return { images: mixed.images, targets: mixed.targets };
}
