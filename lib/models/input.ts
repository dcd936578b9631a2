import { DTypeError, ShapeError, ArgumentError } from '../errors';
import { Tensor } from '../tensor';

/** Checks a batch of images [B, C, H, W] (f32) and returns its shape. */
export function checkImages(images: Tensor, inChans: number, op: string): [number, number, number, number] {
  if (!(images instanceof Tensor)) throw new ArgumentError(`${op}: expected an image tensor [B, ${inChans}, H, W]`);
  if (images.ndim !== 4 || images.shape[1] !== inChans) {
    throw new ShapeError(`${op}: expected images [B, ${inChans}, H, W], got ${images.describe()}`);
  }
  if (images.dtype !== 'f32') throw new DTypeError(`${op}: expected f32 images, got ${images.describe()}`);
  const [B, C, H, W] = images.shape;
  if (B === 0 || H === 0 || W === 0) throw new ShapeError(`${op}: empty image batch ${images.describe()}`);
  return [B, C, H, W];
}
