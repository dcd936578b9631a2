/** Global gradient-norm clipping (reads one scalar back per call). */
import { ArgumentError } from '../errors';
import { noGrad } from '../autograd/grad-mode';
import { scaleInPlace, sumOfSquares } from '../ops/optim';
import { Tensor } from '../tensor';
import { NamedParameters } from './optimizer';

/**
 * Scales every gradient by min(1, maxNorm / (‖g‖ + 1e-6)), ‖g‖ the norm of
 * all gradients together; returns ‖g‖ before clipping.
 */
export function clipGradNorm(params: NamedParameters | Iterable<Tensor>, maxNorm: number): number {
  if (typeof maxNorm !== 'number' || !(maxNorm > 0)) throw new ArgumentError(`clipGradNorm: maxNorm must be a positive number, got ${String(maxNorm)}`);
  const grads: Tensor[] = [];
  for (const p of params) {
    const t = Array.isArray(p) ? p[1] : p;
    if (t instanceof Tensor && t.grad) grads.push(t.grad);
  }
  if (!grads.length) return 0;
  return noGrad(() => {
    let total = 0;
    const parts = grads.map((g) => sumOfSquares(g));
    try {
      for (const s of parts) total += s.dataSync()[0];
    } finally {
      for (const s of parts) s.dispose();
    }
    const norm = Math.sqrt(total);
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) for (const g of grads) scaleInPlace(g, coef);
    return norm;
  });
}
