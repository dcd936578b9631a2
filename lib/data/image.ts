/**
 * Image decoding and the evaluation transform of the released models:
 * resize the shorter side (bicubic), center-crop, scale to [0, 1], normalize
 * with the ImageNet mean/std, channels first. Decoding is sharp (libvips):
 * JPEG, PNG, WebP (and whatever else libvips reads), off the JavaScript thread.
 */
import sharp from 'sharp';
import { ArgumentError, FormatError } from '../errors';
import { tensor } from '../creation';
import { Tensor } from '../tensor';

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

function describe(input: string | Buffer): string {
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
    throw new FormatError(`${describe(input)}: not a readable image (${(err as Error).message})`);
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
      throw new ArgumentError(`${describe(input)}: a ${crop}x${crop} crop does not fit the ${width}x${height} image`);
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
    throw new FormatError(`${describe(input)}: not a readable image (${(err as Error).message})`);
  }
  const plane = width * height;
  if (raw.length !== plane * 3) throw new FormatError(`${describe(input)}: decoded to ${raw.length} bytes, expected ${plane * 3}`);
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; ++c) {
    const m = mean[c], s = std[c];
    for (let i = 0; i < plane; ++i) data[c * plane + i] = (raw[i * 3 + c] / 255 - m) / s;
  }
  return { data, height, width };
}

export interface DecodedBatch {
  /** [B, 3, crop, crop] of the images that decoded (in input order). */
  images: Tensor | null;
  /** Inputs that decoded, in the order of the batch rows. */
  ok: (string | Buffer)[];
  /** Inputs that failed, with why; the others still make the batch. */
  failed: { input: string | Buffer; error: Error }[];
}

/** Decodes images concurrently into one batch; unreadable ones are reported, not fatal. */
export async function loadImageBatch(inputs: (string | Buffer)[], transform: EvalTransform = {}): Promise<DecodedBatch> {
  const results = await Promise.allSettled(inputs.map((i) => decodeImage(i, transform)));
  const ok: (string | Buffer)[] = [];
  const failed: DecodedBatch['failed'] = [];
  const planes: Float32Array[] = [];
  let hw: [number, number] | undefined;
  results.forEach((r, i) => {
    if (r.status === 'rejected') return failed.push({ input: inputs[i], error: r.reason as Error });
    if (hw && (hw[0] !== r.value.height || hw[1] !== r.value.width)) {
      return failed.push({ input: inputs[i], error: new ArgumentError(`${describe(inputs[i])}: ${r.value.height}x${r.value.width} differs from the batch's ${hw[0]}x${hw[1]}; use a crop`) });
    }
    hw = [r.value.height, r.value.width];
    ok.push(inputs[i]);
    planes.push(r.value.data);
  });
  if (!hw) return { images: null, ok, failed };
  const all = new Float32Array(planes.reduce((n, p) => n + p.length, 0));
  planes.reduce((off, p) => (all.set(p, off), off + p.length), 0);
  return { images: tensor(all, [planes.length, 3, hw[0], hw[1]]), ok, failed };
}
