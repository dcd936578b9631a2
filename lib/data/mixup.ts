/**
 * Mixup and CutMix on a host batch, as timm's Mixup: each image is mixed with
 * its partner in the batch reversed (row i with row B-1-i), with lambda drawn
 * from Beta(alpha, alpha); CutMix pastes a box whose clipped area gives the
 * corrected lambda. Targets are the correspondingly mixed label-smoothed one-hot rows.
 */
import { ArgumentError } from '../errors';
import { Rng } from './rng';

export interface MixupOptions {
  numClasses: number;
  /** Mixup's Beta alpha; 0 disables mixup (default 1). */
  mixupAlpha?: number;
  /** CutMix's Beta alpha; 0 disables CutMix (default 0). */
  cutmixAlpha?: number;
  /** CutMix box side as a fraction of the image side drawn uniformly from [min, max) instead of from lambda (sets cutmixAlpha to 1). */
  cutmixMinMax?: readonly [number, number];
  /** Probability of mixing a batch (or element) at all (default 1). */
  prob?: number;
  /** Probability of CutMix rather than mixup when both are enabled (default 0.5). */
  switchProb?: number;
  /** 'batch': one lambda for the batch; 'pair': one per pair of partners; 'elem': one per image (default 'batch'). */
  mode?: 'batch' | 'pair' | 'elem';
  /** Correct CutMix's lambda for the box's area after clipping to the image (default true). */
  correctLam?: boolean;
  /** Label smoothing of the targets (default 0.1). */
  labelSmoothing?: number;
}

export interface MixedBatch {
  /** [B, C, H, W], mixed. */
  images: Float32Array;
  /** [B, numClasses] soft targets; each row sums to 1. */
  targets: Float32Array;
  /** The lambda used for each row (the weight of the row's own image and label). */
  lam: Float32Array;
  /** Whether each row was mixed by CutMix. */
  cutmix: boolean[];
}

interface Box {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
}

function validate(o: MixupOptions): Required<Omit<MixupOptions, 'cutmixMinMax'>> & { cutmixMinMax?: readonly [number, number] } {
  const r = {
    numClasses: o.numClasses,
    mixupAlpha: o.mixupAlpha ?? 1,
    cutmixAlpha: o.cutmixMinMax ? 1 : (o.cutmixAlpha ?? 0),
    cutmixMinMax: o.cutmixMinMax,
    prob: o.prob ?? 1,
    switchProb: o.switchProb ?? 0.5,
    mode: o.mode ?? 'batch',
    correctLam: o.correctLam ?? true,
    labelSmoothing: o.labelSmoothing ?? 0.1,
  };
  if (!Number.isInteger(r.numClasses) || r.numClasses < 1) throw new ArgumentError(`mixup: numClasses must be a positive integer, got ${r.numClasses}`);
  if (!(r.mixupAlpha >= 0) || !(r.cutmixAlpha >= 0)) throw new ArgumentError(`mixup: alphas must be >= 0, got ${r.mixupAlpha} and ${r.cutmixAlpha}`);
  for (const [k, v] of [['prob', r.prob], ['switchProb', r.switchProb]] as const) {
    if (!(v >= 0 && v <= 1)) throw new ArgumentError(`mixup: ${k} must be in [0, 1], got ${v}`);
  }
  if (!(r.labelSmoothing >= 0 && r.labelSmoothing < 1)) throw new ArgumentError(`mixup: labelSmoothing must be in [0, 1), got ${r.labelSmoothing}`);
  if (!['batch', 'pair', 'elem'].includes(r.mode)) throw new ArgumentError(`mixup: mode must be 'batch', 'pair' or 'elem', got ${JSON.stringify(r.mode)}`);
  const mm = r.cutmixMinMax;
  if (mm && !(mm.length === 2 && mm[0] >= 0 && mm[0] < mm[1] && mm[1] <= 1)) throw new ArgumentError(`mixup: cutmixMinMax must be [min, max] with 0 <= min < max <= 1, got [${mm.join(', ')}]`);
  return r;
}

/** Validates mixup options early (the loader applies them in its workers). */
export function checkMixup(options: MixupOptions): void {
  validate(options);
}

/** numpy's randint(lo, hi): [lo, hi), with hi <= lo an error there; here it yields lo. */
function randint(rng: Rng, lo: number, hi: number): number {
  return hi > lo ? lo + rng.int(hi - lo) : lo;
}

/** timm's rand_bbox / rand_bbox_minmax and the lambda of the clipped box. */
function cutmixBox(h: number, w: number, lam: number, o: ReturnType<typeof validate>, rng: Rng): { box: Box; lam: number } {
  let box: Box;
  if (o.cutmixMinMax) {
    const [lo, hi] = o.cutmixMinMax;
    const ch = randint(rng, Math.trunc(h * lo), Math.trunc(h * hi));
    const cw = randint(rng, Math.trunc(w * lo), Math.trunc(w * hi));
    const y0 = randint(rng, 0, h - ch);
    const x0 = randint(rng, 0, w - cw);
    box = { y0, y1: y0 + ch, x0, x1: x0 + cw };
  } else {
    const cut = Math.sqrt(1 - lam);
    const ch = Math.trunc(h * cut);
    const cw = Math.trunc(w * cut);
    const cy = rng.int(h);
    const cx = rng.int(w);
    const clip = (v: number, n: number) => Math.min(Math.max(v, 0), n);
    box = {
      y0: clip(cy - Math.floor(ch / 2), h), y1: clip(cy + Math.floor(ch / 2), h),
      x0: clip(cx - Math.floor(cw / 2), w), x1: clip(cx + Math.floor(cw / 2), w),
    };
  }
  if (o.correctLam || o.cutmixMinMax) lam = 1 - ((box.y1 - box.y0) * (box.x1 - box.x0)) / (h * w);
  return { box, lam };
}

/** timm's per-draw parameters: whether to mix, CutMix or mixup, and lambda. */
function drawParams(o: ReturnType<typeof validate>, rng: Rng): { lam: number; cutmix: boolean } {
  if (!(o.mixupAlpha > 0 || o.cutmixAlpha > 0) || !(rng.next() < o.prob)) return { lam: 1, cutmix: false };
  const cutmix = o.mixupAlpha > 0 && o.cutmixAlpha > 0 ? rng.next() < o.switchProb : o.cutmixAlpha > 0;
  const alpha = cutmix ? o.cutmixAlpha : o.mixupAlpha;
  return { lam: rng.beta(alpha, alpha), cutmix };
}

/**
 * Mixes a batch: `images` [B, C, H, W] (copied unless `inPlace`), integer
 * `labels`. Randomness from `rng` (derive one per batch for reproducible runs).
 */
export function mixBatch(images: Float32Array, shape: readonly number[], labels: ArrayLike<number>, options: MixupOptions,
  rng: Rng, inPlace = false): MixedBatch {
  const o = validate(options);
  if (shape.length !== 4 || images.length !== shape[0] * shape[1] * shape[2] * shape[3]) {
    throw new ArgumentError(`mixup: images of ${images.length} values do not have shape [B, C, H, W] = [${shape.join(', ')}]`);
  }
  const [B, C, H, W] = shape;
  if (labels.length !== B) throw new ArgumentError(`mixup: ${labels.length} labels for a batch of ${B}`);
  if (o.mode === 'pair' && B % 2) throw new ArgumentError(`mixup: mode 'pair' needs an even batch size, got ${B}`);
  const K = o.numClasses;
  for (let i = 0; i < B; ++i) {
    if (!Number.isInteger(labels[i]) || labels[i] < 0 || labels[i] >= K) throw new ArgumentError(`mixup: label ${labels[i]} (row ${i}) is not in [0, ${K})`);
  }
  const src = images;
  const out = inPlace ? images : new Float32Array(images);
  // Partners read the original values, so in-place mixing keeps a copy of the source.
  const orig = inPlace ? new Float32Array(images) : src;
  const lam = new Float32Array(B).fill(1);
  const cutmix = new Array<boolean>(B).fill(false);
  const sample = C * H * W;
  const plane = H * W;

  const mixRow = (i: number, l: number, isCutmix: boolean, box?: Box) => {
    const j = B - 1 - i;
    if (isCutmix) {
      for (let c = 0; c < C; ++c) {
        for (let y = box!.y0; y < box!.y1; ++y) {
          const at = i * sample + c * plane + y * W;
          const from = j * sample + c * plane + y * W;
          out.set(orig.subarray(from + box!.x0, from + box!.x1), at + box!.x0);
        }
      }
    } else {
      for (let k = 0; k < sample; ++k) out[i * sample + k] = orig[i * sample + k] * l + orig[j * sample + k] * (1 - l);
    }
  };

  if (o.mode === 'batch') {
    const p = drawParams(o, rng);
    if (p.lam !== 1) {
      let l = p.lam;
      let box: Box | undefined;
      if (p.cutmix) ({ box, lam: l } = cutmixBox(H, W, p.lam, o, rng));
      for (let i = 0; i < B; ++i) mixRow(i, l, p.cutmix, box);
      lam.fill(l);
      cutmix.fill(p.cutmix);
    }
  } else {
    const rows = o.mode === 'pair' ? B / 2 : B;
    for (let i = 0; i < rows; ++i) {
      const p = drawParams(o, rng);
      if (p.lam === 1) continue;
      let l = p.lam;
      let box: Box | undefined;
      if (p.cutmix) ({ box, lam: l } = cutmixBox(H, W, p.lam, o, rng));
      mixRow(i, l, p.cutmix, box);
      lam[i] = l;
      cutmix[i] = p.cutmix;
      if (o.mode === 'pair') {
        const j = B - 1 - i; // the partner gets the complementary mix: same box, or weight 1 - lam on itself
        mixRow(j, l, p.cutmix, box);
        lam[j] = l;
        cutmix[j] = p.cutmix;
      }
    }
  }

  const off = o.labelSmoothing / K;
  const on = 1 - o.labelSmoothing + off;
  const targets = new Float32Array(B * K);
  for (let i = 0; i < B; ++i) {
    const row = targets.subarray(i * K, (i + 1) * K);
    row.fill(off);
    row[labels[i]] += lam[i] * (on - off);
    row[labels[B - 1 - i]] += (1 - lam[i]) * (on - off);
  }
  return { images: out, targets, lam, cutmix };
}
