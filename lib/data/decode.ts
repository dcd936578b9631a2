/**
 * Image decoding and the evaluation transform of the released models:
 * resize the shorter side (bicubic), center-crop, scale to [0, 1], normalize
 * with the ImageNet mean/std, channels first. Decoding is sharp (libvips):
 * JPEG, PNG, WebP (and whatever else libvips reads), except for the common
 * JPEG (8-bit YCbCr or RGB, no EXIF rotation, no ICC profile), which the
 * system's libjpeg-turbo decodes where it is installed: the same decoder and
 * pixels as sharp's, without a libvips pipeline per image (most of the cost
 * of a small image). The resize, crop and normalization are one native pass
 * (native/cpu/image_resample.cc) that reproduces Pillow's bicubic filter,
 * i.e. the pixels torchvision's PIL pipeline gives the model. All of it runs
 * off the JavaScript thread.
 */
import * as fs from 'fs';
import sharp from 'sharp';
import { ArgumentError, FormatError } from '../errors';
import { native } from '../native';

interface RawImage { data: Uint8Array; width: number; height: number }

interface ImageNative {
  resampleImage(pixels: Uint8Array, width: number, height: number, channels: number, resizeWidth: number, resizeHeight: number,
    left: number, top: number, cropWidth: number, cropHeight: number, mean: number[], std: number[]): Promise<Float32Array>;
  decodeJpeg(bytes: Uint8Array, maxPixels: number): Promise<RawImage | null>;
  jpegDecoder(): string | null;
}
const imageNative = () => native() as unknown as ImageNative;

/** sharp's default limit on input pixels (limitInputPixels), which the JPEG path keeps too. */
const MAX_INPUT_PIXELS = 0x3fff * 0x3fff;

/** The library that decodes common JPEGs ('libjpeg.so.62'), or null where sharp decodes every image. */
export function jpegDecoder(): string | null {
  return imageNative().jpegDecoder();
}

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export interface EvalTransform {
  /** Shorter side after resizing (default 256); 0 skips the resize. */
  resize?: number;
  /** Side of the center crop (default 224); 0 skips the crop. */
  crop?: number;
  /** Per-channel mean/std: 3 values (RGB) or 1 (the image is converted to grayscale). */
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
  const channels = mean.length;
  if ((channels !== 3 && channels !== 1) || std.length !== channels || std.some((s) => !(s > 0))) {
    throw new ArgumentError('image transform: mean and std need 3 values each (RGB) or 1 each (grayscale), std > 0');
  }
  const { data, width, height } = await decodePixels(input, channels as 1 | 3);
  // torchvision Resize(int): the shorter side becomes `resize`, the other is truncated.
  const [rw, rh] = resize === 0 ? [width, height]
    : width <= height ? [resize, Math.floor((resize * height) / width)] : [Math.floor((resize * width) / height), resize];
  if (crop > rw || crop > rh) {
    throw new ArgumentError(`${describeInput(input)}: a ${crop}x${crop} crop does not fit the ${rw}x${rh} image`);
  }
  const [cw, ch] = crop === 0 ? [rw, rh] : [crop, crop];
  const top = roundHalfEven((rh - ch) / 2);
  const left = roundHalfEven((rw - cw) / 2);
  const out = await imageNative().resampleImage(data, width, height, channels, rw, rh, left, top, cw, ch, [...mean], [...std]);
  // A view made here is of this realm's Float32Array (the addon's belongs to the main context, which vm sandboxes tell apart).
  return { data: new Float32Array(out.buffer, out.byteOffset, out.length), height: ch, width: cw };
}

/** Decoded 8-bit pixels, `channels` (3: RGB, 1: grayscale) interleaved. */
export async function decodePixels(input: string | Buffer, channels: 1 | 3): Promise<RawImage> {
  const jpeg = channels === 3 && imageNative().jpegDecoder() !== null;
  let bytes: string | Buffer = input;
  if (jpeg && typeof input === 'string') bytes = await fs.promises.readFile(input).catch(() => input);  // sharp names a missing file
  if (jpeg && typeof bytes !== 'string' && bytes.length > 2 && bytes[0] === 0xff && bytes[1] === 0xd8) {
    const decoded = await imageNative().decodeJpeg(bytes, MAX_INPUT_PIXELS);
    if (decoded) return decoded;
  }
  return decodeWithSharp(input, bytes, channels);
}

/** sharp's decode of `bytes` (a path or the file's bytes); errors name `input`. */
export async function decodeWithSharp(input: string | Buffer, bytes: string | Buffer, channels: 1 | 3): Promise<RawImage> {
  let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    // EXIF orientation applied; alpha dropped; grayscale when one channel is asked for.
    raw = await sharp(bytes, { failOn: 'error' }).rotate().removeAlpha().toColourspace(channels === 1 ? 'b-w' : 'srgb')
      .raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new FormatError(`${describeInput(input)}: not a readable image (${(err as Error).message})`);
  }
  const { width, height } = raw.info;
  if (raw.info.channels !== channels || raw.data.length !== width * height * channels) {
    throw new FormatError(`${describeInput(input)}: decoded to ${raw.data.length} bytes of ${raw.info.channels} channels, expected ${width}x${height}x${channels}`);
  }
  return { data: raw.data, width, height };
}

/**
 * Interleaved 8-bit pixels (as many channels as `mean` has values) to
 * normalized channels-first floats; `flip` mirrors left-right (the training
 * flip, at no extra cost).
 */
export function pixelsToChw(raw: Uint8Array, height: number, width: number, mean: readonly number[], std: readonly number[], flip = false): Float32Array {
  const plane = height * width;
  const C = mean.length;
  const data = new Float32Array(C * plane);
  for (let c = 0; c < C; ++c) {
    const m = mean[c], s = std[c];
    for (let y = 0; y < height; ++y) {
      const row = y * width;
      for (let x = 0; x < width; ++x) data[c * plane + row + x] = (raw[(row + (flip ? width - 1 - x : x)) * C + c] / 255 - m) / s;
    }
  }
  return data;
}
