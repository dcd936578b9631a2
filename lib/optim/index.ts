/** Optimizers, gradient clipping, dynamic loss scaling and weight EMA. */
export { Optimizer, DEFAULT_NO_DECAY, matchesPattern } from './optimizer';
export type { NamedParameters, OptimizerState, StepOptions } from './optimizer';
export { AdamW } from './adamw';
export type { AdamOptions } from './adamw';
export { Lamb } from './lamb';
export { SGD } from './sgd';
export type { SgdOptions } from './sgd';
export { clipGradNorm } from './clip';
export { GradScaler } from './grad-scaler';
export type { GradScalerOptions, GradScalerState } from './grad-scaler';
export { WeightEma } from './ema';
