/** Layers, the differentiable functional ops and the losses. */
export { Module } from './module';
export type { LoadReport } from './module';
export { Linear, LayerNorm, PatchConv, SwiGLU, ModuleList, Initializer } from './layers';
export * as functional from './functional';
export { crossEntropy, softTargetCrossEntropy, binaryCrossEntropyWithLogits } from './losses';
export type { CrossEntropyOptions, Reduction } from './losses';
