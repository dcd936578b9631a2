/** LAMB: Adam moments with a per-tensor trust ratio ‖w‖/‖update‖ (large-batch recipe of the plain models). */
import { lambUpdate, lambUpdateMulti } from '../ops/optim';
import { Tensor } from '../tensor';
import { AdamFamily, AdamOptions } from './adamw';
import { NamedParameters, ParamSlot } from './optimizer';

export class Lamb extends AdamFamily {
  readonly kind: string = 'LAMB';

  constructor(params: NamedParameters, options: AdamOptions = {}) {
    super(params, options, 'LAMB', 1e-6);
  }

  protected update(s: ParamSlot, grad: Tensor): void {
    lambUpdate(s.param, grad, this.buffer(s, 'exp_avg'), this.buffer(s, 'exp_avg_sq'), this.adamArgs(s));
  }

  protected updateGroup(slots: ParamSlot[], grads: Tensor[], foundInf: Tensor | null): void {
    const [params, expAvgs, expAvgSqs] = this.adamLists(slots);
    lambUpdateMulti(params, grads, expAvgs, expAvgSqs, { ...this.adamMultiArgs(slots), foundInf });
  }
}
