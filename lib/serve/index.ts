export { InferenceServer, IMAGE_TYPES } from './server';
export type { ServerOptions } from './server';
export { ModelEndpoint, defaultModelName } from './endpoint';
export type { ModelSpec, InferenceOutput } from './endpoint';
export { DynamicBatcher, QueueFullError, RequestTimeoutError } from './batcher';
export type { BatcherOptions, BatchRunner, Slot } from './batcher';
export { Counter, Gauge, Histogram, Registry } from './metrics';
export { HttpError } from './http-error';
