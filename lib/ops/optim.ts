/**
 * In-place optimizer updates and training-loop helpers (native/ops/optim.h).
 * Every tensor they update is used as it is: f32, contiguous, one shape and
 * device, or a clear error (never a silent copy, whose update would be lost).
 * They queue on the device stream like any op and return at once.
 */
import { NativeTensorHandle, native } from '../native';
import { Tensor } from '../tensor';
import { ArgumentError } from '../errors';
import { booleanOption, numberOption, optionalTensorArg, optionsArg, tensorArg } from './args';

interface OptimNative {
  adamwUpdate(p: NativeTensorHandle, g: NativeTensorHandle, m: NativeTensorHandle, v: NativeTensorHandle,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;
  sgdUpdate(p: NativeTensorHandle, g: NativeTensorHandle, buf: NativeTensorHandle | null, lr: number, momentum: number,
    dampening: number, weightDecay: number, nesterov: boolean, firstStep: boolean): void;
  lambUpdate(p: NativeTensorHandle, g: NativeTensorHandle, m: NativeTensorHandle, v: NativeTensorHandle,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;
  adamwUpdateMulti(p: NativeTensorHandle[], g: NativeTensorHandle[], m: NativeTensorHandle[], v: NativeTensorHandle[],
    lr: number, beta1: number, beta2: number, eps: number, weightDecays: number[], steps: number[], foundInf: NativeTensorHandle | null): void;
  lambUpdateMulti(p: NativeTensorHandle[], g: NativeTensorHandle[], m: NativeTensorHandle[], v: NativeTensorHandle[],
    lr: number, beta1: number, beta2: number, eps: number, weightDecays: number[], steps: number[], foundInf: NativeTensorHandle | null): void;
  sgdUpdateMulti(p: NativeTensorHandle[], g: NativeTensorHandle[], buf: NativeTensorHandle[], lr: number, momentum: number,
    dampening: number, nesterov: boolean, weightDecays: number[], firstSteps: boolean[], foundInf: NativeTensorHandle | null): void;
  unscaleGrads(g: NativeTensorHandle[], foundInf: NativeTensorHandle, invScale: number): void;
  sumOfSquares(t: NativeTensorHandle): NativeTensorHandle;
  scaleInPlace(t: NativeTensorHandle, s: number): void;
  addInPlace(dst: NativeTensorHandle, src: NativeTensorHandle, alpha: number): void;
  lerpInPlace(dst: NativeTensorHandle, src: NativeTensorHandle, weight: number): void;
}
const optimNative = () => native() as unknown as OptimNative;

export interface AdamOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The number of this update, from 1 (for the bias corrections). */
  step: number;
}

export interface SgdOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  /** The first update with this momentum buffer: it starts as the gradient. */
  firstStep: boolean;
}

const adamKeys = ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'step'] as const;

function adamArgs(o: unknown, op: string): [number, number, number, number, number, number] {
  const opts = optionsArg<AdamOptions>(o ?? null, op) as Record<string, unknown>;
  return adamKeys.map((k) => numberOption(opts, k, op)) as [number, number, number, number, number, number];
}

/**
 * One AdamW step in place, in torch.optim.AdamW's order of operations (fp32):
 * p *= 1 − lr·wd; m = lerp(m, g, 1 − β1); v = β2·v + (1 − β2)·g²;
 * p −= (lr / (1 − β1^step))·m / (sqrt(v) / sqrt(1 − β2^step) + eps).
 */
export function adamwUpdate(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, o: AdamOptions): void {
  const op = 'adamwUpdate';
  optimNative().adamwUpdate(tensorArg(param, op, 'param'), tensorArg(grad, op, 'grad'), tensorArg(expAvg, op, 'expAvg'),
    tensorArg(expAvgSq, op, 'expAvgSq'), ...adamArgs(o, op));
}

/**
 * One SGD step in place with torch.optim.SGD's semantics: g += wd·p;
 * buf = firstStep ? g : momentum·buf + (1 − dampening)·g;
 * g = nesterov ? g + momentum·buf : buf; p −= lr·g. The buffer is needed
 * (and updated) only when momentum is not 0; grad is never changed.
 */
export function sgdUpdate(param: Tensor, grad: Tensor, momentumBuffer: Tensor | null, o: SgdOptions): void {
  const op = 'sgdUpdate';
  const opts = optionsArg<SgdOptions>(o ?? null, op) as Record<string, unknown>;
  optimNative().sgdUpdate(tensorArg(param, op, 'param'), tensorArg(grad, op, 'grad'),
    optionalTensorArg(momentumBuffer, op, 'momentumBuffer'), numberOption(opts, 'lr', op), numberOption(opts, 'momentum', op),
    numberOption(opts, 'dampening', op), numberOption(opts, 'weightDecay', op), booleanOption(opts, 'nesterov', op),
    booleanOption(opts, 'firstStep', op));
}

/**
 * One LAMB step in place: Adam moments with bias correction,
 * u = m̂/(sqrt(v̂) + eps) + wd·p, trust ratio r = ‖p‖/‖u‖ (1 when either is 0),
 * p −= lr·r·u. One launch; both norms are reduced in a fixed order.
 */
export function lambUpdate(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, o: AdamOptions): void {
  const op = 'lambUpdate';
  optimNative().lambUpdate(tensorArg(param, op, 'param'), tensorArg(grad, op, 'grad'), tensorArg(expAvg, op, 'expAvg'),
    tensorArg(expAvgSq, op, 'expAvgSq'), ...adamArgs(o, op));
}

/** The common hyper-parameters of a multi-tensor Adam-family step, and one weight decay and step count per tensor. */
export interface AdamMultiOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Per tensor (0 for the parameters without decay). */
  weightDecays: readonly number[];
  /** Per tensor: the number of this update of that tensor, from 1. */
  steps: readonly number[];
  /** A loss-scaled step's flag (see unscaleGrads): when it holds 1 the kernels change nothing. */
  foundInf?: Tensor | null;
}

export interface SgdMultiOptions {
  lr: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecays: readonly number[];
  /** Per tensor: the first update with its momentum buffer. */
  firstSteps: readonly boolean[];
  /** A loss-scaled step's flag (see unscaleGrads): when it holds 1 the kernels change nothing. */
  foundInf?: Tensor | null;
}

function listArg<T>(value: unknown, op: string, what: string, element: (v: unknown, name: string) => T): T[] {
  if (!Array.isArray(value)) throw new ArgumentError(`${op}: ${what} must be an array, got ${value === null ? 'null' : typeof value}`);
  return value.map((v, i) => element(v, `${what}[${i}]`));
}
const tensorList = (value: unknown, op: string, what: string) => listArg(value, op, what, (v, name) => tensorArg(v, op, name));

function adamMultiArgs(o: unknown, op: string): [number, number, number, number, number[], number[], NativeTensorHandle | null] {
  const opts = optionsArg<AdamMultiOptions>(o ?? null, op) as Record<string, unknown>;
  // Element types are checked natively, with the index in the message.
  return [numberOption(opts, 'lr', op), numberOption(opts, 'beta1', op), numberOption(opts, 'beta2', op), numberOption(opts, 'eps', op),
    listArg(opts.weightDecays, op, 'weightDecays', (v) => v as number), listArg(opts.steps, op, 'steps', (v) => v as number),
    optionalTensorArg(opts.foundInf ?? null, op, 'foundInf')];
}

/**
 * adamwUpdate over lists of tensors (tensor i of each list belongs to
 * parameter i) in one kernel call: the same bits as one adamwUpdate per
 * tensor with its weight decay and step. All tensors on one device.
 */
export function adamwUpdateMulti(params: readonly Tensor[], grads: readonly Tensor[], expAvgs: readonly Tensor[],
  expAvgSqs: readonly Tensor[], o: AdamMultiOptions): void {
  const op = 'adamwUpdateMulti';
  optimNative().adamwUpdateMulti(tensorList(params, op, 'params'), tensorList(grads, op, 'grads'), tensorList(expAvgs, op, 'expAvgs'),
    tensorList(expAvgSqs, op, 'expAvgSqs'), ...adamMultiArgs(o, op));
}

/** lambUpdate over lists of tensors in one kernel call (a trust ratio per tensor); the bits of the per-tensor updates. */
export function lambUpdateMulti(params: readonly Tensor[], grads: readonly Tensor[], expAvgs: readonly Tensor[],
  expAvgSqs: readonly Tensor[], o: AdamMultiOptions): void {
  const op = 'lambUpdateMulti';
  optimNative().lambUpdateMulti(tensorList(params, op, 'params'), tensorList(grads, op, 'grads'), tensorList(expAvgs, op, 'expAvgs'),
    tensorList(expAvgSqs, op, 'expAvgSqs'), ...adamMultiArgs(o, op));
}

/**
 * sgdUpdate over lists of tensors in one kernel call; momentumBuffers holds
 * one buffer per parameter, or nothing when momentum is 0.
 */
export function sgdUpdateMulti(params: readonly Tensor[], grads: readonly Tensor[], momentumBuffers: readonly Tensor[],
  o: SgdMultiOptions): void {
  const op = 'sgdUpdateMulti';
  const opts = optionsArg<SgdMultiOptions>(o ?? null, op) as Record<string, unknown>;
  optimNative().sgdUpdateMulti(tensorList(params, op, 'params'), tensorList(grads, op, 'grads'),
    tensorList(momentumBuffers, op, 'momentumBuffers'), numberOption(opts, 'lr', op), numberOption(opts, 'momentum', op),
    numberOption(opts, 'dampening', op), booleanOption(opts, 'nesterov', op),
    listArg(opts.weightDecays, op, 'weightDecays', (v) => v as number), listArg(opts.firstSteps, op, 'firstSteps', (v) => v as boolean),
    optionalTensorArg(opts.foundInf ?? null, op, 'foundInf'));
}

/**
 * The unscale pass of dynamic loss scaling over a list of gradients (one
 * device) in one kernel call: g *= invScale in place, and foundInf (one f32
 * element on that device) is set to 1 when any g held inf or NaN. It is
 * never cleared here: zero it once per step. Nothing is read back.
 */
export function unscaleGrads(grads: readonly Tensor[], foundInf: Tensor, invScale: number): void {
  const op = 'unscaleGrads';
  optimNative().unscaleGrads(tensorList(grads, op, 'grads'), tensorArg(foundInf, op, 'foundInf'), invScale);
}

/** Σ t² as an f32 scalar [] (fixed reduction order; for global gradient-norm clipping). */
export function sumOfSquares(t: Tensor): Tensor {
  return new Tensor(optimNative().sumOfSquares(tensorArg(t, 'sumOfSquares', 't')));
}

/** t *= s, in place. */
export function scaleInPlace(t: Tensor, s: number): void {
  optimNative().scaleInPlace(tensorArg(t, 'scaleInPlace', 't'), s);
}

/** dst += α·src, in place (gradient accumulation). */
export function addInPlace(dst: Tensor, src: Tensor, alpha = 1): void {
  optimNative().addInPlace(tensorArg(dst, 'addInPlace', 'dst'), tensorArg(src, 'addInPlace', 'src'), alpha);
}

/** dst += w·(src − dst), in place (an exponential moving average of weights); w = 1 gives src exactly. */
export function lerpInPlace(dst: Tensor, src: Tensor, weight: number): void {
  optimNative().lerpInPlace(tensorArg(dst, 'lerpInPlace', 'dst'), tensorArg(src, 'lerpInPlace', 'src'), weight);
}
