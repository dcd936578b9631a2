/**
 * Classification losses and their gradients (native/ops/loss.h). Losses are
 * per row (per element for BCE): reduce them as the training objective needs,
 * and pass the matching per-row weights as `dloss` (1/B each for a mean).
 */
import { ArgumentError } from '../errors';
import { NativeTensorHandle, native } from '../native';
import { Tensor } from '../tensor';
import { optionsArg, tensorArg } from './args';

interface LossNative {
  crossEntropy(logits: NativeTensorHandle, labels: NativeTensorHandle, smoothing: number): NativeTensorHandle[];
  crossEntropyBackward(dloss: NativeTensorHandle, logits: NativeTensorHandle, lse: NativeTensorHandle, labels: NativeTensorHandle, smoothing: number): NativeTensorHandle;
  softCrossEntropy(logits: NativeTensorHandle, targets: NativeTensorHandle): NativeTensorHandle[];
  softCrossEntropyBackward(dloss: NativeTensorHandle, logits: NativeTensorHandle, lse: NativeTensorHandle, targets: NativeTensorHandle): NativeTensorHandle;
  bceWithLogits(logits: NativeTensorHandle, targets: NativeTensorHandle): NativeTensorHandle;
  bceWithLogitsBackward(dloss: NativeTensorHandle, logits: NativeTensorHandle, targets: NativeTensorHandle): NativeTensorHandle;
}
const lossNative = () => native() as unknown as LossNative;

export interface CrossEntropyOptions {
  /** ε in [0, 1]: the target puts 1 − ε on the label and ε/K on every class (default 0). */
  labelSmoothing?: number;
}

function smoothing(options: unknown, op: string): number {
  const eps = optionsArg<CrossEntropyOptions>(options, op, ['labelSmoothing']).labelSmoothing ?? 0;
  if (typeof eps !== 'number' || !(eps >= 0 && eps <= 1)) {
    throw new ArgumentError(`${op}: labelSmoothing must be a number in [0, 1], got ${String(eps)}`);
  }
  return eps;
}

/**
 * Cross-entropy of class logits [B, K] (f32) against labels [B] (i32 or i64)
 * per row: loss_i = lse_i − (1−ε)·z_{i,y_i} − (ε/K)·Σ_k z_ik, with
 * lse_i = log Σ_k exp(z_ik) (kept for the backward). A label outside [0, K)
 * is never read past: the loss fails, and reading it throws an error that
 * names the label.
 */
export function crossEntropyForward(logits: Tensor, labels: Tensor, options?: CrossEntropyOptions): { loss: Tensor; lse: Tensor } {
  const op = 'crossEntropyForward';
  const eps = smoothing(options, op);
  const [loss, lse] = lossNative().crossEntropy(tensorArg(logits, op, 'logits'), tensorArg(labels, op, 'labels'), eps)
    .map((h) => new Tensor(h));
  return { loss, lse };
}

/**
 * dlogits [B, K] = dloss_i·(softmax_ik − (1−ε)·[k = y_i] − ε/K) for the
 * per-row weights dloss [B] and the forward's lse [B].
 */
export function crossEntropyBackward(dloss: Tensor, logits: Tensor, lse: Tensor, labels: Tensor, options?: CrossEntropyOptions): Tensor {
  const op = 'crossEntropyBackward';
  const eps = smoothing(options, op);
  return new Tensor(lossNative().crossEntropyBackward(tensorArg(dloss, op, 'dloss'), tensorArg(logits, op, 'logits'),
    tensorArg(lse, op, 'lse'), tensorArg(labels, op, 'labels'), eps));
}

/**
 * Cross-entropy against soft targets [B, K] f32 (mixup/cutmix):
 * loss_i = Σ_k t_ik·(lse_i − z_ik).
 */
export function softCrossEntropyForward(logits: Tensor, targets: Tensor): { loss: Tensor; lse: Tensor } {
  const op = 'softCrossEntropyForward';
  const [loss, lse] = lossNative().softCrossEntropy(tensorArg(logits, op, 'logits'), tensorArg(targets, op, 'targets'))
    .map((h) => new Tensor(h));
  return { loss, lse };
}

/** dlogits [B, K] = dloss_i·(softmax_ik·Σ_k t_ik − t_ik). */
export function softCrossEntropyBackward(dloss: Tensor, logits: Tensor, lse: Tensor, targets: Tensor): Tensor {
  const op = 'softCrossEntropyBackward';
  return new Tensor(lossNative().softCrossEntropyBackward(tensorArg(dloss, op, 'dloss'), tensorArg(logits, op, 'logits'),
    tensorArg(lse, op, 'lse'), tensorArg(targets, op, 'targets')));
}

/**
 * Binary cross-entropy on logits, elementwise (any shape, f32):
 * max(z, 0) − z·t + log1p(exp(−|z|)), stable for any z.
 */
export function bceWithLogitsForward(logits: Tensor, targets: Tensor): Tensor {
  const op = 'bceWithLogitsForward';
  return new Tensor(lossNative().bceWithLogits(tensorArg(logits, op, 'logits'), tensorArg(targets, op, 'targets')));
}

/** dlogits = dloss·(σ(z) − t), elementwise. */
export function bceWithLogitsBackward(dloss: Tensor, logits: Tensor, targets: Tensor): Tensor {
  const op = 'bceWithLogitsBackward';
  return new Tensor(lossNative().bceWithLogitsBackward(tensorArg(dloss, op, 'dloss'), tensorArg(logits, op, 'logits'),
    tensorArg(targets, op, 'targets')));
}
