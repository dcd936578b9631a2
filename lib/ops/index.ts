/**
 * The transformer ops: GEMM-based layers, fused attention, normalization and
 * layouts, their gradients, the losses and the in-place optimizer updates.
 */
export * from './linalg';
export * from './attention';
export * from './nn';
export * from './loss';
export * from './optim';
// The same functions grouped, for code that prefers vl.ops.loss.* / vl.ops.optim.*.
export * as loss from './loss';
export * as optim from './optim';
