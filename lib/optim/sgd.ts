/** SGD with momentum (and Nesterov), PyTorch semantics. */
import { ArgumentError } from '../errors';
import { sgdUpdate, sgdUpdateMulti } from '../ops/optim';
import { Tensor } from '../tensor';
import { checkNonNegative } from './adamw';
import { NamedParameters, Optimizer, ParamSlot } from './optimizer';

export interface SgdOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
  noDecay?: readonly (string | RegExp)[];
  /** One multi-tensor kernel call per device and step (default true); false: one per parameter (the same results). */
  fused?: boolean;
}

export class SGD extends Optimizer {
  readonly kind: string = 'SGD';
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly weightDecay: number;

  constructor(params: NamedParameters, options: SgdOptions = {}) {
    super(params, options.lr ?? 0.1, options.noDecay, options.fused);
    this.momentum = checkNonNegative(options.momentum ?? 0.9, this.kind, 'momentum');
    this.dampening = checkNonNegative(options.dampening ?? 0, this.kind, 'dampening');
    this.nesterov = options.nesterov ?? false;
    this.weightDecay = checkNonNegative(options.weightDecay ?? 0, this.kind, 'weightDecay');
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new ArgumentError('SGD: Nesterov momentum needs momentum > 0 and dampening 0');
    }
  }

  protected update(s: ParamSlot, grad: Tensor): void {
    sgdUpdate(s.param, grad, this.momentum > 0 ? this.buffer(s, 'momentum_buffer') : null, {
      lr: this.lr, momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov,
      weightDecay: s.decay ? this.weightDecay : 0, firstStep: s.step === 1,
    });
  }

  protected updateGroup(slots: ParamSlot[], grads: Tensor[], foundInf: Tensor | null): void {
    sgdUpdateMulti(slots.map((s) => s.param), grads, this.momentum > 0 ? slots.map((s) => this.buffer(s, 'momentum_buffer')) : [], {
      lr: this.lr, momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov,
      weightDecays: slots.map((s) => s.decay ? this.weightDecay : 0), firstSteps: slots.map((s) => s.step === 1), foundInf,
    });
  }

  protected hyper(): Record<string, unknown> {
    return { momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov, weightDecay: this.weightDecay };
  }
}
