/** models.create(config, options): the plain and pyramid VisionLLaMA. */
import { ArgumentError, DTypeError } from '../errors';
import { Initializer, WEIGHT_DTYPES } from '../nn/layers';
import { CreateModelOptions, ModelConfig, resolveConfig } from './config';
import { PlainVisionLlama } from './plain';
import { PyramidVisionLlama } from './pyramid';

export { PRESETS, resolveConfig, swigluHidden } from './config';
export type { ModelConfig, PlainConfig, PyramidConfig, CreateModelOptions } from './config';
export { PlainVisionLlama } from './plain';
export { loadModel } from './load';
export { PyramidVisionLlama } from './pyramid';
export type VisionLlama = PlainVisionLlama | PyramidVisionLlama;

/**
 * A model from a preset name ('plain-s', 'pyramid-b', ...) or a config object
 * like the fixtures' JSON; options override preset fields. The model starts
 * in eval mode with seeded random weights; load a checkpoint with loadStateDict.
 */
export function create(config: string | Record<string, unknown> | ModelConfig, options: CreateModelOptions = {}): VisionLlama {
  const cfg = resolveConfig(config as string | Record<string, unknown>, options);
  const ls = options.layerScaleInit ?? 1e-4;
  if (typeof ls !== 'number' || !Number.isFinite(ls)) throw new ArgumentError(`create: layerScaleInit must be a finite number, got ${String(ls)}`);
  const init = new Initializer(options.seed ?? 0, options.device, ls);
  const dtype = options.dtype ?? 'f32';
  if (!WEIGHT_DTYPES.includes(dtype)) {
    throw new DTypeError(`create: dtype must be one of ${WEIGHT_DTYPES.join(', ')} (the inference weight dtype), got ${JSON.stringify(dtype)}`);
  }
  const model = cfg.arch === 'plain' ? new PlainVisionLlama(cfg, init, dtype) : new PyramidVisionLlama(cfg, init, dtype);
  return model.eval();
}
