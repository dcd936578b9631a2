/**
 * Fashion-MNIST (Zalando Research): 28x28 grayscale images of clothing in 10
 * classes, 60000 for training and 10000 for testing, as IDX files. Read from
 * options.root, else Debian's dataset-fashion-mnist install, else the copy in
 * this package's data/fashion-mnist (whose training images are split in two
 * files to keep each under 20 MiB; see its README).
 */
import * as fs from 'fs';
import * as path from 'path';
import { ArgumentError, FormatError, VisionLlamaError } from '../errors';
import { IdxArray, readIdx, readIdxSync } from './idx';

export type FashionMnistSplit = 'train' | 'test';

export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
/** Pixel mean and standard deviation of the training images, scaled to [0, 1]. */
export const FASHION_MNIST_MEAN = 0.286;
export const FASHION_MNIST_STD = 0.353;

export const FASHION_MNIST_SYSTEM_DIR = '/usr/share/datasets/fashion-mnist';
/** data/fashion-mnist at the package root (this file is lib/data/*.ts or dist/data/*.js). */
export const FASHION_MNIST_BUNDLED_DIR = path.resolve(__dirname, '..', '..', 'data', 'fashion-mnist');

export interface FashionMnist {
  split: FashionMnistSplit;
  /** [count, 28, 28] pixels, row-major, 0 = background. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  height: 28;
  width: 28;
  classes: string[];
  /** The directory the files were read from. */
  source: string;
}

export interface FashionMnistOptions {
  /** A directory with the IDX files (gzipped or not); no fallback when given. */
  root?: string;
}

interface Located {
  dir: string;
  images: string[];
  labels: string;
}

/** NAME.gz, NAME, or (with `parts`) NAME.part1.gz, NAME.part2.gz, ... (joined in order). */
function findFiles(dir: string, name: string, parts = false): string[] | null {
  for (const file of [`${name}.gz`, name]) {
    if (fs.existsSync(path.join(dir, file))) return [path.join(dir, file)];
  }
  if (!parts) return null;
  const found: string[] = [];
  for (let i = 1; fs.existsSync(path.join(dir, `${name}.part${i}.gz`)); ++i) found.push(path.join(dir, `${name}.part${i}.gz`));
  return found.length ? found : null;
}

function locate(split: FashionMnistSplit, options: FashionMnistOptions): Located {
  if (split !== 'train' && split !== 'test') throw new ArgumentError(`loadFashionMnist: split must be 'train' or 'test', got ${JSON.stringify(split)}`);
  const prefix = split === 'train' ? 'train' : 't10k';
  const wanted = `${prefix}-images-idx3-ubyte[.gz] and ${prefix}-labels-idx1-ubyte[.gz]`;
  const dirs = options.root !== undefined ? [options.root] : [FASHION_MNIST_SYSTEM_DIR, FASHION_MNIST_BUNDLED_DIR];
  for (const dir of dirs) {
    const images = findFiles(dir, `${prefix}-images-idx3-ubyte`, true);
    const labels = findFiles(dir, `${prefix}-labels-idx1-ubyte`);
    if (images && labels) return { dir, images, labels: labels[0] };
  }
  if (options.root !== undefined) throw new ArgumentError(`loadFashionMnist: ${options.root} has no Fashion-MNIST ${split} files (${wanted})`);
  throw new VisionLlamaError(`loadFashionMnist: no Fashion-MNIST ${split} files (${wanted}) in ${dirs.join(' or ')}`);
}

function assemble(split: FashionMnistSplit, where: Located, imageParts: IdxArray[], labels: IdxArray): FashionMnist {
  imageParts.forEach((part, i) => {
    const s = part.shape;
    if (s.length !== 3 || s[1] !== 28 || s[2] !== 28) {
      throw new FormatError(`${where.images[i]}: shape [${s.join(', ')}] is not Fashion-MNIST images ([n, 28, 28])`);
    }
  });
  const count = imageParts.reduce((n, p) => n + p.shape[0], 0);
  if (labels.shape.length !== 1 || labels.shape[0] !== count) {
    throw new FormatError(`${where.labels}: shape [${labels.shape.join(', ')}] does not label the ${count} images of ${where.images.join(' + ')}`);
  }
  const bad = labels.data.findIndex((l) => l >= FASHION_MNIST_CLASSES.length);
  if (bad >= 0) throw new FormatError(`${where.labels}: label ${labels.data[bad]} at index ${bad} is not one of the 10 classes`);
  let images = imageParts[0].data;
  if (imageParts.length > 1) {
    images = new Uint8Array(count * 28 * 28);
    imageParts.reduce((off, p) => (images.set(p.data, off), off + p.data.length), 0);
  }
  return { split, images, labels: labels.data, count, height: 28, width: 28, classes: [...FASHION_MNIST_CLASSES], source: where.dir };
}

/** Loads one split (see the module comment for where it looks). */
export async function loadFashionMnist(split: FashionMnistSplit, options: FashionMnistOptions = {}): Promise<FashionMnist> {
  const where = locate(split, options);
  const [labels, ...images] = await Promise.all([readIdx(where.labels), ...where.images.map(readIdx)]);
  return assemble(split, where, images, labels);
}

/** loadFashionMnist, blocking. */
export function loadFashionMnistSync(split: FashionMnistSplit, options: FashionMnistOptions = {}): FashionMnist {
  const where = locate(split, options);
  return assemble(split, where, where.images.map(readIdxSync), readIdxSync(where.labels));
}
