/**
 * Image decoding and the evaluation transform of the released models:
 * resize the shorter side (bicubic), center-crop, scale to [0, 1], normalize
 * with the ImageNet mean/std, channels first. Decoding is sharp (libvips):
 * JPEG, PNG, WebP (and whatever else libvips reads), off the JavaScript thread.
 */
import sharp from 'sharp';
import { ArgumentError, FormatError } from '../errors';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export interface EvalTransform {
  /** Shorter side after resizing (default 256); 0 skips the resize. */
  resize?: number;
  /** Side of the center crop (default 224); 0 skips the crop. */
  crop?: number;
  mean?: readonly number[];
  std?: readonly number[];
}

/** Python's round(): halves go to the even neighbour (as torchvision's center crop computes). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** How errors name an input: its path, or its size for a buffer. */
export function describeInput(input: string | Buffer): string {
  return typeof input === 'string' ? input : `<${input.length}-byte buffer>`;
}

/** One image as CHW float32 values after the transform, and its size. */
export async function decodeImage(input: string | Buffer, transform: EvalTransform = {}): Promise<{ data: Float32Array; height: number; width: number }> {
  const resize = transform.resize ?? 256;
  const crop = transform.crop ?? 224;
  const mean = transform.mean ?? IMAGENET_MEAN;
  const std = transform.std ?? IMAGENET_STD;
  if (!Number.isInteger(resize) || resize < 0 || !Number.isInteger(crop) || crop < 0) {
    throw new ArgumentError(`image transform: resize and crop must be non-negative integers, got ${resize} and ${crop}`);
  }
  if (mean.length !== 3 || std.length !== 3 || std.some((s) => !(s > 0))) {
    throw new ArgumentError('image transform: mean and std need 3 values each (std > 0)');
  }
  let pipeline: ReturnType<typeof sharp>;
  let width: number;
  let height: number;
  try {
    pipeline = sharp(input, { failOn: 'error' }).rotate(); // EXIF orientation applied
    const meta = await sharp(input).metadata();
    if (!meta.width || !meta.height) throw new Error('no image size');
    const swap = (meta.orientation ?? 1) >= 5;
    width = swap ? meta.height : meta.width;
    height = swap ? meta.width : meta.height;
  } catch (err) {
    throw new FormatError(`${describeInput(input)}: not a readable image (${(err as Error).message})`);
  }
  if (resize > 0) {
    // torchvision Resize(int): the shorter side becomes `resize`, the other is truncated.
    const [w, h] = width <= height ? [resize, Math.floor((resize * height) / width)] : [Math.floor((resize * width) / height), resize];
    pipeline = pipeline.resize({ width: w, height: h, fit: 'fill', kernel: 'cubic' });
    width = w;
    height = h;
  }
  if (crop > 0) {
    if (crop > width || crop > height) {
      throw new ArgumentError(`${describeInput(input)}: a ${crop}x${crop} crop does not fit the ${width}x${height} image`);
    }
    const top = roundHalfEven((height - crop) / 2);
    const left = roundHalfEven((width - crop) / 2);
    pipeline = pipeline.extract({ left, top, width: crop, height: crop });
    width = height = crop;
  }
  let raw: Buffer;
  try {
    raw = await pipeline.removeAlpha().toColourspace('srgb').raw().toBuffer();
  } catch (err) {
    throw new FormatError(`${describeInput(input)}: not a readable image (${(err as Error).message})`);
  }
  const plane = width * height;
  if (raw.length !== plane * 3) throw new FormatError(`${describeInput(input)}: decoded to ${raw.length} bytes, expected ${plane * 3}`);
  return { data: rgbToChw(raw, height, width, mean, std), height, width };
}

/** Interleaved 8-bit RGB to normalized channels-first floats; `flip` mirrors left-right (the training flip, at no extra cost). */
export function rgbToChw(raw: Uint8Array, height: number, width: number, mean: readonly number[], std: readonly number[], flip = false): Float32Array {
  const plane = height * width;
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; ++c) {
    const m = mean[c], s = std[c];
    for (let y = 0; y < height; ++y) {
      const row = y * width;
      for (let x = 0; x < width; ++x) data[c * plane + row + x] = (raw[(row + (flip ? width - 1 - x : x)) * 3 + c] / 255 - m) / s;
    }
  }
  return data;
}
