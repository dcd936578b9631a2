/** AdamW (decoupled weight decay), with PyTorch's order of operations, and what LAMB shares with it. */
import { ArgumentError } from '../errors';
import { AdamMultiOptions, adamwUpdateMulti, adamwUpdate } from '../ops/optim';
import { Tensor } from '../tensor';
import { NamedParameters, Optimizer, ParamSlot } from './optimizer';

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Names excluded from weight decay (see DEFAULT_NO_DECAY); [] decays every tensor. */
  noDecay?: readonly (string | RegExp)[];
  /** One multi-tensor kernel call per device and step (default true); false: one per parameter (the same results). */
  fused?: boolean;
}

function checkBetas(betas: unknown, op: string): [number, number] {
  if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)) {
    throw new ArgumentError(`${op}: betas must be two numbers in [0, 1), got ${JSON.stringify(betas)}`);
  }
  return [betas[0], betas[1]];
}

export function checkNonNegative(v: unknown, op: string, what: string): number {
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new ArgumentError(`${op}: ${what} must be a non-negative number, got ${String(v)}`);
  return v;
}

/** Adam moments (exp_avg, exp_avg_sq) with bias correction; subclasses turn them into an update. */
export abstract class AdamFamily extends Optimizer {
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;

  protected constructor(params: NamedParameters, options: AdamOptions, kind: string, defaultEps: number) {
    super(params, options.lr ?? 1e-3, options.noDecay, options.fused);
    this.betas = checkBetas(options.betas ?? [0.9, 0.999], kind);
    this.eps = checkNonNegative(options.eps ?? defaultEps, kind, 'eps');
    this.weightDecay = checkNonNegative(options.weightDecay ?? 0.01, kind, 'weightDecay');
  }

  /** The arguments of the update kernels for this parameter's step. */
  protected adamArgs(s: ParamSlot) {
    return {
      lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps,
      weightDecay: s.decay ? this.weightDecay : 0, step: s.step,
    };
  }

  /** The arguments of the multi-tensor update kernels for these parameters' step. */
  protected adamMultiArgs(slots: ParamSlot[]): AdamMultiOptions {
    return {
      lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps,
      weightDecays: slots.map((s) => s.decay ? this.weightDecay : 0), steps: slots.map((s) => s.step),
    };
  }

  /** The parameters, gradients and both moments of a group, for the multi-tensor kernels. */
  protected adamLists(slots: ParamSlot[]): [Tensor[], Tensor[], Tensor[]] {
    return [slots.map((s) => s.param), slots.map((s) => this.buffer(s, 'exp_avg')), slots.map((s) => this.buffer(s, 'exp_avg_sq'))];
  }

  protected hyper(): Record<string, unknown> {
    return { betas: this.betas, eps: this.eps, weightDecay: this.weightDecay };
  }
}

export class AdamW extends AdamFamily {
  readonly kind: string = 'AdamW';

  constructor(params: NamedParameters, options: AdamOptions = {}) {
    super(params, options, 'AdamW', 1e-8);
  }

  protected update(s: ParamSlot, grad: Tensor): void {
    adamwUpdate(s.param, grad, this.buffer(s, 'exp_avg'), this.buffer(s, 'exp_avg_sq'), this.adamArgs(s));
  }

  protected updateGroup(slots: ParamSlot[], grads: Tensor[], foundInf: Tensor | null): void {
    const [params, expAvgs, expAvgSqs] = this.adamLists(slots);
    adamwUpdateMulti(params, grads, expAvgs, expAvgSqs, { ...this.adamMultiArgs(slots), foundInf });
  }
}
