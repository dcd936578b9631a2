/** Optimizers, gradient clipping and weight EMA. */
export { Optimizer, DEFAULT_NO_DECAY, matchesPattern } from './optimizer';
export type { NamedParameters, OptimizerState } from './optimizer';
export { AdamW } from './adamw';
export type { AdamOptions } from './adamw';
export { Lamb } from './lamb';
export { SGD } from './sgd';
export type { SgdOptions } from './sgd';
export { clipGradNorm } from './clip';
export { WeightEma } from './ema';
