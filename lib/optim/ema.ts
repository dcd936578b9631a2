/** An exponential moving average of a model's weights (evaluated in place of the raw weights). */
import { ArgumentError } from '../errors';
import { noGrad } from '../autograd/grad-mode';
import { lerpInPlace } from '../ops/optim';
import { keep } from '../scope';
import { Tensor } from '../tensor';
import { NamedParameters } from './optimizer';

export class WeightEma {
  readonly shadow = new Map<string, Tensor>();

  constructor(params: NamedParameters, readonly decay = 0.9999) {
    if (typeof decay !== 'number' || !(decay >= 0 && decay <= 1)) throw new ArgumentError(`WeightEma: decay must be in [0, 1], got ${String(decay)}`);
    noGrad(() => {
      for (const [name, p] of params) {
        this.shadow.set(name, keep(p.clone()));
      }
    });
  }

  /** ema ← ema + (1 − decay)·(param − ema) for every parameter. */
  update(params: NamedParameters): void {
    noGrad(() => {
      for (const [name, p] of params) {
        const s = this.shadow.get(name);
        if (!s) throw new ArgumentError(`WeightEma.update: no average for parameter '${name}'`);
        lerpInPlace(s, p, 1 - this.decay);
      }
    });
  }

  /** The averaged weights as a state dict (e.g. for module.loadStateDict or a checkpoint). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.shadow);
  }

  /** Copies saved averages in (same names and shapes as the parameters). */
  load(state: Map<string, Tensor>): void {
    noGrad(() => {
      for (const [name, cur] of this.shadow) {
        const t = state.get(name);
        if (!t || t.shape.some((d, i) => d !== cur.shape[i])) throw new ArgumentError(`WeightEma.load: no matching average for '${name}'`);
        const moved = t.to({ dtype: 'f32', device: cur.device });
        this.shadow.set(name, keep(moved.clone()));
        moved.dispose();
        cur.dispose();
      }
    });
  }

  dispose(): void {
    for (const t of this.shadow.values()) t.dispose();
    this.shadow.clear();
  }
  [Symbol.dispose](): void { this.dispose(); }
}
