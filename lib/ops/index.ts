/** The transformer ops: GEMM-based layers, fused attention, normalization and layouts. */
export * from './linalg';
export * from './attention';
export * from './nn';
