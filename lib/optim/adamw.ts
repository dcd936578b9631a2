/** AdamW (decoupled weight decay), with PyTorch's order of operations. */
import { ArgumentError } from '../errors';
import { adamwUpdate } from '../ops/optim';
import { Tensor } from '../tensor';
import { NamedParameters, Optimizer, ParamSlot } from './optimizer';

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Names excluded from weight decay (see DEFAULT_NO_DECAY); [] decays every tensor. */
  noDecay?: readonly (string | RegExp)[];
}

export function checkBetas(betas: unknown, op: string): [number, number] {
  if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)) {
    throw new ArgumentError(`${op}: betas must be two numbers in [0, 1), got ${JSON.stringify(betas)}`);
  }
  return [betas[0], betas[1]];
}

export function checkNonNegative(v: unknown, op: string, what: string): number {
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new ArgumentError(`${op}: ${what} must be a non-negative number, got ${String(v)}`);
  return v;
}

export class AdamW extends Optimizer {
  readonly kind: string = 'AdamW';
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;

  constructor(params: NamedParameters, options: AdamOptions = {}) {
    super(params, options.lr ?? 1e-3, options.noDecay);
    this.betas = checkBetas(options.betas ?? [0.9, 0.999], this.kind);
    this.eps = checkNonNegative(options.eps ?? 1e-8, this.kind, 'eps');
    this.weightDecay = checkNonNegative(options.weightDecay ?? 0.01, this.kind, 'weightDecay');
  }

  protected update(s: ParamSlot, grad: Tensor): void {
    adamwUpdate(s.param, grad, this.buffer(s, 'exp_avg'), this.buffer(s, 'exp_avg_sq'), {
      lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps,
      weightDecay: s.decay ? this.weightDecay : 0, step: s.step,
    });
  }

  protected hyper(): Record<string, unknown> {
    return { betas: this.betas, eps: this.eps, weightDecay: this.weightDecay };
  }
}
