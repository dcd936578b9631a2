/**
 * Training augmentation, with all randomness from an Rng:
 * - RGB images (files or encoded buffers): torchvision's RandomResizedCrop
 *   (bilinear), horizontal flip, ImageNet normalization, channels first.
 * - Small grayscale arrays (Fashion-MNIST): random crop with zero padding,
 *   horizontal flip, normalization, as [1, H, W].
 * The evaluation transform of RGB images is decodeImage (decode.ts).
 */
import sharp from 'sharp';
import { ArgumentError, FormatError } from '../errors';
import { describeInput, IMAGENET_MEAN, IMAGENET_STD, rgbToChw } from './decode';
import { Rng } from './rng';

export interface RandomResizedCropOptions {
  /** Output side. */
  size: number;
  /** Range of the crop's area as a fraction of the image's (default [0.08, 1]). */
  scale?: readonly [number, number];
  /** Range of the crop's aspect ratio, width / height (default [3/4, 4/3]). */
  ratio?: readonly [number, number];
}

export interface RgbTrainTransform extends RandomResizedCropOptions {
  /** Probability of a horizontal flip (default 0.5). */
  flip?: number;
  mean?: readonly number[];
  std?: readonly number[];
}

export interface GrayTrainTransform {
  /** Zero padding on each side before cropping back to the original size (default 4; 0 = no crop). */
  pad?: number;
  /** Probability of a horizontal flip (default 0.5). */
  flip?: number;
  /** Of pixel values scaled to [0, 1]. */
  mean: number;
  std: number;
}

export interface GrayNormalize {
  mean: number;
  std: number;
}

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

function checkRange(what: string, r: readonly number[], positive: boolean): void {
  if (r.length !== 2 || !(r[0] <= r[1]) || !(positive ? r[0] > 0 : r[0] >= 0)) {
    throw new ArgumentError(`RandomResizedCrop: ${what} must be [min, max] with ${positive ? '0 <' : '0 <='} min <= max, got [${r.join(', ')}]`);
  }
}

function checkProbability(what: string, p: number): void {
  if (!(p >= 0 && p <= 1)) throw new ArgumentError(`${what}: flip probability must be in [0, 1], got ${p}`);
}

/** Validates an RGB training transform (so a bad one fails where it is made, not in a worker). */
export function checkRgbTrain(t: RgbTrainTransform): void {
  if (!Number.isInteger(t.size) || t.size < 1) throw new ArgumentError(`RandomResizedCrop: size must be a positive integer, got ${t.size}`);
  checkRange('scale', t.scale ?? [0.08, 1], false);
  checkRange('ratio', t.ratio ?? [3 / 4, 4 / 3], true);
  checkProbability('RandomResizedCrop', t.flip ?? 0.5);
  const mean = t.mean ?? IMAGENET_MEAN;
  const std = t.std ?? IMAGENET_STD;
  if (mean.length !== 3 || std.length !== 3 || std.some((s) => !(s > 0))) throw new ArgumentError('RandomResizedCrop: mean and std need 3 values each (std > 0)');
}

export function checkGray(t: GrayNormalize & { pad?: number; flip?: number }): void {
  if (!Number.isFinite(t.mean) || !(t.std > 0)) throw new ArgumentError(`grayscale transform: needs a finite mean and std > 0, got ${t.mean} and ${t.std}`);
  if (t.pad !== undefined && (!Number.isInteger(t.pad) || t.pad < 0)) throw new ArgumentError(`grayscale transform: pad must be a non-negative integer, got ${t.pad}`);
  checkProbability('grayscale transform', t.flip ?? 0.5);
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries at a random area
 * and log-uniform aspect ratio that fit, else the whole image clamped to the ratio range.
 */
export function randomResizedCropBox(height: number, width: number, rng: Rng,
  scale: readonly [number, number] = [0.08, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3]): CropBox {
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; ++attempt) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** Decodes an RGB image and applies RandomResizedCrop + flip + normalize: [3, size, size] floats. */
export async function decodeTrainImage(input: string | Buffer, t: RgbTrainTransform, rng: Rng): Promise<Float32Array> {
  const unreadable = (err: unknown) => new FormatError(`${describeInput(input)}: not a readable image (${(err as Error).message})`);
  let raw: Buffer;
  try {
    const image = sharp(input, { failOn: 'error', autoOrient: true });
    const { autoOrient } = await image.metadata();
    if (!autoOrient?.width || !autoOrient?.height) throw new Error('no image size');
    const box = randomResizedCropBox(autoOrient.height, autoOrient.width, rng, t.scale, t.ratio);
    raw = await image
      .extract(box)
      .resize({ width: t.size, height: t.size, fit: 'fill', kernel: 'linear' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer();
  } catch (err) {
    throw unreadable(err);
  }
  if (raw.length !== t.size * t.size * 3) throw new FormatError(`${describeInput(input)}: decoded to ${raw.length} bytes, expected ${t.size * t.size * 3}`);
  const flip = rng.next() < (t.flip ?? 0.5);
  return rgbToChw(raw, t.size, t.size, t.mean ?? IMAGENET_MEAN, t.std ?? IMAGENET_STD, flip);
}

/** Grayscale uint8 [H, W] to normalized floats [1, H, W]. */
export function normalizeGray(image: Uint8Array, t: GrayNormalize, out: Float32Array = new Float32Array(image.length)): Float32Array {
  for (let i = 0; i < image.length; ++i) out[i] = (image[i] / 255 - t.mean) / t.std;
  return out;
}

/**
 * Grayscale uint8 [H, W]: pad with zeros, crop a random HxW window, maybe
 * mirror, normalize. Returns [1, H, W] floats (written into `out` if given).
 */
export function augmentGray(image: Uint8Array, height: number, width: number, t: GrayTrainTransform, rng: Rng,
  out: Float32Array = new Float32Array(height * width)): Float32Array {
  const pad = t.pad ?? 4;
  const dy = pad ? rng.int(2 * pad + 1) - pad : 0; // window offset in the unpadded image
  const dx = pad ? rng.int(2 * pad + 1) - pad : 0;
  const flip = rng.next() < (t.flip ?? 0.5);
  const zero = -t.mean / t.std;
  for (let y = 0; y < height; ++y) {
    const sy = y + dy;
    for (let x = 0; x < width; ++x) {
      const sx = (flip ? width - 1 - x : x) + dx;
      out[y * width + x] = sy >= 0 && sy < height && sx >= 0 && sx < width ? (image[sy * width + sx] / 255 - t.mean) / t.std : zero;
    }
  }
  return out;
}
