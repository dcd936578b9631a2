/**
 * visionllama: VisionLLaMA for Node.js. This module is the tensor runtime;
 * models, heads, training and serving build on it.
 */
import './polyfill';
import './autograd';

export { Tensor } from './tensor';
export type { Device } from './tensor';
export type { DType, DataTypeMap, TypedData } from './dtype';
export { DTYPES, dtypeSize } from './dtype';
export { tensor, zeros, ones, full, arange, randn, rand, manualSeed, concat } from './creation';
export type { CreateOptions, RandomOptions, TensorData } from './creation';
export { tidy, keep } from './scope';
export { noGrad, enableGrad, isGradEnabled, checkpoint } from './autograd';
export { autocast, mathPrecision } from './autocast';
export type { MathPrecision } from './autocast';
export type { BackwardOptions } from './tensor';
export { memory, backends, backendInfo, cpuInfo, setNumThreads, synchronize, emptyCache, defaultDevice, setDefaultDevice, recordEvent, DeviceEvent } from './runtime';
export type { MemoryStats } from './runtime';
export * from './errors';
export * as io from './io';
export * as data from './data';
export * as ops from './ops';
export * as models from './models';
export * as nn from './nn';
export * as optim from './optim';
export * as train from './train';
export { Module } from './nn/module';
export type { LoadReport } from './nn/module';
