/**
 * Batches of decoded images as tensors (the decoding and the evaluation
 * transform are in decode.ts, which needs no tensors and runs in loader workers).
 */
import { ArgumentError } from '../errors';
import { tensor } from '../creation';
import { Tensor } from '../tensor';
import { decodeImage, describeInput, EvalTransform } from './decode';

export { decodeImage, jpegDecoder, IMAGENET_MEAN, IMAGENET_STD } from './decode';
export type { EvalTransform } from './decode';

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
      return failed.push({ input: inputs[i], error: new ArgumentError(`${describeInput(inputs[i])}: ${r.value.height}x${r.value.width} differs from the batch's ${hw[0]}x${hw[1]}; use a crop`) });
    }
    hw = [r.value.height, r.value.width];
    ok.push(inputs[i]);
    planes.push(r.value.data);
  });
  if (!hw) return { images: null, ok, failed };
  const all = new Float32Array(planes.reduce((n, p) => n + p.length, 0));
  planes.reduce((off, p) => (all.set(p, off), off + p.length), 0);
  const channels = planes[0].length / (hw[0] * hw[1]);  // 3, or 1 for a grayscale transform
  return { images: tensor(all, [planes.length, channels, hw[0], hw[1]]), ok, failed };
}
