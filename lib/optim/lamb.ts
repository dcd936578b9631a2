/** LAMB: Adam moments with a per-tensor trust ratio ‖w‖/‖update‖ (large-batch recipe of the plain models). */
import { lambUpdate } from '../ops/optim';
import { Tensor } from '../tensor';
import { AdamOptions, checkBetas, checkNonNegative } from './adamw';
import { NamedParameters, Optimizer, ParamSlot } from './optimizer';

export class Lamb extends Optimizer {
  readonly kind: string = 'LAMB';
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;

  constructor(params: NamedParameters, options: AdamOptions = {}) {
    super(params, options.lr ?? 1e-3, options.noDecay);
    this.betas = checkBetas(options.betas ?? [0.9, 0.999], this.kind);
    this.eps = checkNonNegative(options.eps ?? 1e-6, this.kind, 'eps');
    this.weightDecay = checkNonNegative(options.weightDecay ?? 0.01, this.kind, 'weightDecay');
  }

  protected update(s: ParamSlot, grad: Tensor): void {
    lambUpdate(s.param, grad, this.buffer(s, 'exp_avg'), this.buffer(s, 'exp_avg_sq'), {
      lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps,
      weightDecay: s.decay ? this.weightDecay : 0, step: s.step,
    });
  }

  protected hyper(): Record<string, unknown> {
    return { betas: this.betas, eps: this.eps, weightDecay: this.weightDecay };
  }
}
