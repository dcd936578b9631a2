/**
 * Plain descriptors of datasets and transforms: what a DataLoader hands its
 * worker threads (data, not closures), and their validation.
 */
import { ArgumentError } from '../errors';
import { EvalTransform } from './decode';
import { FashionMnistSplit, FASHION_MNIST_CLASSES, loadFashionMnistSync } from './fashion-mnist';
import { ImageFolderSpec } from './image-folder';
import { checkGray, checkRgbTrain, GrayNormalize, GrayTrainTransform, RgbTrainTransform } from './transforms';

/** Grayscale uint8 images [n, height, width] in memory (e.g. a loaded Fashion-MNIST split). */
export interface ArraysSpec {
  kind: 'arrays';
  images: Uint8Array;
  labels: ArrayLike<number>;
  height: number;
  width: number;
  /** Default: the largest label + 1. */
  numClasses?: number;
}

export interface FashionMnistSpec {
  kind: 'fashion-mnist';
  split: FashionMnistSplit;
  root?: string;
}

export type DatasetSpec = ArraysSpec | ImageFolderSpec | FashionMnistSpec;

export type TransformSpec =
  | ({ kind: 'rgb-train' } & RgbTrainTransform)
  | ({ kind: 'rgb-eval' } & EvalTransform)
  | ({ kind: 'gray-train' } & GrayTrainTransform)
  | ({ kind: 'gray-eval' } & GrayNormalize);

/** What the workers get: the images of an arrays dataset in shared memory, or nothing (image paths come with each batch). */
export type SourceSetup = { kind: 'arrays'; images: Uint8Array; height: number; width: number } | { kind: 'image-folder' };

/** A dataset resolved for loading: labels (and paths) in the calling thread, the source for the workers. */
export interface ResolvedDataset {
  source: SourceSetup;
  count: number;
  labels: Int32Array;
  paths?: string[];
  numClasses: number;
}

function shared(bytes: Uint8Array): Uint8Array {
  if (bytes.buffer instanceof SharedArrayBuffer) return bytes;
  const copy = new Uint8Array(new SharedArrayBuffer(bytes.length));
  copy.set(bytes);
  return copy;
}

function maxPlusOne(labels: Int32Array): number {
  return labels.reduce((m, l) => Math.max(m, l + 1), 0);
}

export function resolveDataset(spec: DatasetSpec): ResolvedDataset {
  switch (spec.kind) {
    case 'fashion-mnist': {
      const fm = loadFashionMnistSync(spec.split, { root: spec.root });
      return resolveDataset({ kind: 'arrays', images: fm.images, labels: fm.labels, height: 28, width: 28, numClasses: FASHION_MNIST_CLASSES.length });
    }
    case 'arrays': {
      const { height, width } = spec;
      const count = spec.labels.length;
      if (!Number.isInteger(height) || height < 1 || !Number.isInteger(width) || width < 1) throw new ArgumentError(`arrays dataset: bad image size ${height}x${width}`);
      if (spec.images.length !== count * height * width) {
        throw new ArgumentError(`arrays dataset: ${spec.images.length} pixels are not ${count} labelled ${height}x${width} images`);
      }
      const labels = Int32Array.from(spec.labels);
      const bad = labels.findIndex((l, i) => l < 0 || l !== spec.labels[i]);
      if (bad >= 0) throw new ArgumentError(`arrays dataset: label ${spec.labels[bad]} at index ${bad} is not a non-negative integer`);
      return { source: { kind: 'arrays', images: shared(spec.images), height, width }, count, labels, numClasses: spec.numClasses ?? maxPlusOne(labels) };
    }
    case 'image-folder': {
      const labels = Int32Array.from(spec.files, (f) => f.label);
      const paths = spec.files.map((f) => f.path);
      return { source: { kind: 'image-folder' }, count: paths.length, labels, paths, numClasses: spec.classes?.length ?? maxPlusOne(labels) };
    }
    default:
      throw new ArgumentError(`unknown dataset kind ${JSON.stringify((spec as { kind: unknown }).kind)}`);
  }
}

/** Checks that the transform fits the data and returns the shape of one sample, [C, H, W]. */
export function sampleShape(source: SourceSetup, t: TransformSpec): [number, number, number] {
  const gray = t.kind === 'gray-train' || t.kind === 'gray-eval';
  if (gray !== (source.kind === 'arrays')) {
    throw new ArgumentError(`transform '${t.kind}' does not apply to ${source.kind === 'arrays' ? 'grayscale arrays (use gray-train or gray-eval)' : 'image files (use rgb-train or rgb-eval)'}`);
  }
  switch (t.kind) {
    case 'gray-train':
    case 'gray-eval':
      checkGray(t);
      return [1, (source as { height: number }).height, (source as { width: number }).width];
    case 'rgb-train':
      checkRgbTrain(t);
      return [3, t.size, t.size];
    case 'rgb-eval': {
      const crop = t.crop ?? 224;
      if (!Number.isInteger(crop) || crop < 1) throw new ArgumentError(`rgb-eval: batches need a fixed size: crop must be a positive integer, got ${crop}`);
      return [3, crop, crop];
    }
    default:
      throw new ArgumentError(`unknown transform kind ${JSON.stringify((t as { kind: unknown }).kind)}`);
  }
}
