/**
 * Model configurations (SPEC §2, §3): the presets of the released models and
 * objects shaped like the fixtures' JSON files.
 */
import { DType } from '../dtype';
import { ArgumentError } from '../errors';

export interface PlainConfig {
  arch: 'plain';
  dim: number;
  depth: number;
  heads: number;
  patchSize: number;
  numClasses: number;
  inChans: number;
  /** AS2DRoPE auto-scaling: positions scaled by baseSize / imageHeight. */
  autoScale: boolean;
  baseSize: number;
}

export interface PyramidConfig {
  arch: 'pyramid';
  dims: number[];
  depths: number[];
  heads: number[];
  windowSizes: number[];
  srRatios: number[];
  patchSize: number;
  numClasses: number;
  inChans: number;
  /**
   * GSA key positions use the full-resolution stage width (how the released
   * weights were trained, SPEC §3); 'reduced' is the geometric variant.
   */
  gsaKeyLayout: 'full-width' | 'reduced';
}

export type ModelConfig = PlainConfig | PyramidConfig;

export interface CreateModelOptions {
  numClasses?: number;
  autoScale?: boolean;
  baseSize?: number;
  /**
   * Inference dtype of the weights: bf16 or f16 keeps packed weights in that
   * format and multiplies on its operands (activations stay f32 between ops).
   * f16 is for GPUs (fp16 tensor cores); on the CPU it runs as the reference.
   */
  dtype?: Extract<DType, 'f32' | 'bf16' | 'f16'>;
  device?: string;
  /** Seed of the random initialization (weights are usually loaded afterwards). */
  seed?: number;
  /** Initial LayerScale γ of every block (default 1e-4). */
  layerScaleInit?: number;
}

const PLAIN = {
  'plain-s': { dim: 384, depth: 12, heads: 6 },
  'plain-b': { dim: 768, depth: 12, heads: 12 },
  'plain-l': { dim: 1024, depth: 24, heads: 16 },
};
const PYRAMID = {
  'pyramid-s': { dims: [64, 128, 256, 512], depths: [2, 2, 10, 4], heads: [2, 4, 8, 16] },
  'pyramid-b': { dims: [96, 192, 384, 768], depths: [2, 2, 18, 2], heads: [3, 6, 12, 24] },
  'pyramid-l': { dims: [128, 256, 512, 1024], depths: [2, 2, 18, 2], heads: [4, 8, 16, 32] },
};
export const PRESETS = [...Object.keys(PLAIN), ...Object.keys(PYRAMID)];

/** SwiGLU hidden width: roundUp(int(8C/3), 256). */
export function swigluHidden(dim: number): number {
  const n = Math.floor((8 * dim) / 3);
  return Math.ceil(n / 256) * 256;
}

function posInt(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) <= 0) throw new ArgumentError(`model config: ${what} must be a positive integer, got ${JSON.stringify(v)}`);
  return v as number;
}

function list4(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.length !== 4) throw new ArgumentError(`model config: ${what} must be an array of 4 positive integers, got ${JSON.stringify(v)}`);
  return v.map((x, i) => posInt(x, `${what}[${i}]`));
}

/** Resolves a preset name or a config object, applying option overrides, and checks it. */
export function resolveConfig(config: string | Record<string, unknown>, options: CreateModelOptions = {}): ModelConfig {
  let raw: Record<string, unknown>;
  if (typeof config === 'string') {
    const key = config.toLowerCase();
    if (key in PLAIN) raw = { arch: 'plain', patchSize: 16, ...PLAIN[key as keyof typeof PLAIN] };
    else if (key in PYRAMID) raw = { arch: 'pyramid', patchSize: 4, windowSizes: [7, 7, 7, 7], srRatios: [8, 4, 2, 1], ...PYRAMID[key as keyof typeof PYRAMID] };
    else throw new ArgumentError(`unknown model '${config}': expected one of ${PRESETS.join(', ')} or a config object`);
  } else if (config && typeof config === 'object') {
    raw = { ...config };
  } else {
    throw new ArgumentError('model config: expected a preset name or a config object');
  }
  const numClasses = posInt(options.numClasses ?? raw.numClasses ?? 1000, 'numClasses');
  const inChans = posInt(raw.inChans ?? 3, 'inChans');
  if (raw.arch === 'plain') {
    const dim = posInt(raw.dim, 'dim');
    const heads = posInt(raw.heads, 'heads');
    if (dim % heads !== 0 || (dim / heads) % 4 !== 0) {
      throw new ArgumentError(`model config: dim ${dim} must split into ${heads} heads of a width divisible by 4 (AS2DRoPE)`);
    }
    return {
      arch: 'plain', dim, heads, depth: posInt(raw.depth, 'depth'), patchSize: posInt(raw.patchSize ?? 16, 'patchSize'),
      numClasses, inChans, autoScale: Boolean(options.autoScale ?? raw.autoScale ?? false),
      baseSize: posInt(options.baseSize ?? raw.baseSize ?? 224, 'baseSize'),
    };
  }
  if (raw.arch === 'pyramid') {
    const dims = list4(raw.dims, 'dims');
    const heads = list4(raw.heads, 'heads');
    dims.forEach((d, i) => {
      if (d % heads[i] !== 0 || (d / heads[i]) % 4 !== 0) {
        throw new ArgumentError(`model config: stage ${i}: dim ${d} must split into ${heads[i]} heads of a width divisible by 4 (AS2DRoPE)`);
      }
    });
    const layout = raw.gsaKeyLayout ?? 'full-width';
    if (layout !== 'full-width' && layout !== 'reduced') {
      throw new ArgumentError(`model config: gsaKeyLayout must be 'full-width' or 'reduced', got ${JSON.stringify(layout)}`);
    }
    return {
      arch: 'pyramid', dims, heads, depths: list4(raw.depths, 'depths'), windowSizes: list4(raw.windowSizes ?? [7, 7, 7, 7], 'windowSizes'),
      srRatios: list4(raw.srRatios ?? [8, 4, 2, 1], 'srRatios'), patchSize: posInt(raw.patchSize ?? 4, 'patchSize'),
      numClasses, inChans, gsaKeyLayout: layout,
    };
  }
  throw new ArgumentError(`model config: arch must be 'plain' or 'pyramid', got ${JSON.stringify(raw.arch)}`);
}
