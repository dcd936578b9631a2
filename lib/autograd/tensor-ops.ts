/**
 * Recording versions of the Tensor methods (arithmetic, reductions, views),
 * plugged into Tensor as hooks: `a.mul(b).sum()` records when an input
 * requires grad and grad mode is on.
 */
import { concat, zeros } from '../creation';
import { Tensor } from '../tensor';
import { recordOp } from './node';

/** Sums a broadcast gradient back to `shape` (numpy broadcasting rules). */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (g.ndim === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.ndim - shape.length;
  const dims: number[] = [];
  g.shape.forEach((d, i) => {
    if (i < lead || (shape[i - lead] === 1 && d !== 1)) dims.push(i);
  });
  const s = g.sum(dims, { keepdim: true });
  try {
    return s.reshape([...shape]);
  } finally {
    s.dispose();
  }
}

/** sumTo that consumes `g`. */
function reduceTo(g: Tensor, shape: readonly number[]): Tensor {
  const r = sumTo(g, shape);
  if (r !== g) g.dispose();
  return r;
}

export function binary(op: 'add' | 'sub' | 'mul' | 'div', a: Tensor, b: Tensor | number): Tensor {
  const bt = b instanceof Tensor ? b : null;
  const scalar = typeof b === 'number' ? b : 0;
  const [out] = recordOp(op, [a, bt], () => {
    const y = op === 'add' ? a.add(b) : op === 'sub' ? a.sub(b) : op === 'mul' ? a.mul(b) : a.div(b);
    const aShape = a.shape, bShape = bt?.shape ?? [];
    const needA = a.requiresGrad, needB = bt?.requiresGrad ?? false, isTensor = bt !== null;
    switch (op) {
      case 'add':
      case 'sub':
        return {
          outputs: [y],
          backward: ([g]) => [
            needA ? sumTo(g!, aShape) : null,
            needB ? (op === 'add' ? sumTo(g!, bShape) : reduceTo(g!.mul(-1), bShape)) : null,
          ],
        };
      case 'mul':
        // Save only what the other side's gradient needs.
        return {
          outputs: [y],
          save: [isTensor && needA ? bt : null, needB ? a : null].filter((t): t is Tensor => t !== null),
          backward: ([g], saved) => {
            let i = 0;
            const sb = isTensor && needA ? saved[i++] : null;
            const sa = needB ? saved[i++] : null;
            return [
              needA ? reduceTo(g!.mul(sb ?? scalar), aShape) : null,
              needB ? reduceTo(g!.mul(sa!), bShape) : null,
            ];
          },
        };
      default:
        return {
          outputs: [y],
          save: bt ? [bt, y] : [],
          backward: ([g], saved) => {
            const da = needA ? reduceTo(g!.div(isTensor ? saved[0] : scalar), aShape) : null;
            let db: Tensor | null = null;
            if (needB) {
              // d(a/b)/db = -(a/b)/b
              const t = g!.mul(saved[1]);
              const u = t.div(saved[0]);
              t.dispose();
              db = reduceTo(u.mul(-1), bShape);
              u.dispose();
            }
            return [da, db];
          },
        };
    }
  });
  return out;
}

export function sum(t: Tensor, dims: number[], keepdim: boolean): Tensor {
  const shape = t.shape;
  const [out] = recordOp('sum', [t], () => ({
    outputs: [t.sum(dims, { keepdim })],
    backward: ([g]) => {
      const nd = shape.length;
      const all = dims.length === 0 ? [...shape.keys()] : dims.map((d) => (d < 0 ? d + nd : d));
      const kept = shape.map((d, i) => (all.includes(i) ? 1 : d));
      const r = g!.reshape(kept);
      const e = r.expand([...shape]);
      const c = e.contiguous();
      r.dispose();
      e.dispose();
      return [c];
    },
  }));
  return out;
}

export function reshape(t: Tensor, shape: number[], view: boolean): Tensor {
  const from = [...t.shape];
  const [out] = recordOp(view ? 'view' : 'reshape', [t], () => ({
    outputs: [view ? t.view(shape) : t.reshape(shape)],
    backward: ([g]) => [g!.reshape(from)],
  }));
  return out;
}

export function permute(t: Tensor, dims: number[]): Tensor {
  const [out] = recordOp('permute', [t], () => {
    const y = t.permute(dims);
    const inverse = new Array<number>(dims.length);
    dims.forEach((d, i) => { inverse[d < 0 ? d + dims.length : d] = i; });
    return { outputs: [y], backward: ([g]) => [g!.permute(inverse)] };
  });
  return out;
}

/** The gradient of a slice: zeros around it along `dim`. */
export function padAlong(g: Tensor, dim: number, before: number, after: number): Tensor {
  if (before === 0 && after === 0) return g;
  const part = (n: number) => {
    const s = [...g.shape];
    s[dim] = n;
    return zeros(s, { dtype: g.dtype, device: g.device });
  };
  const pieces = [...(before ? [part(before)] : []), g, ...(after ? [part(after)] : [])];
  try {
    return concat(pieces, dim);
  } finally {
    for (const p of pieces) if (p !== g) p.dispose();
  }
}

export function narrow(t: Tensor, dim: number, start: number, length: number): Tensor {
  const size = t.shape[dim];
  const [out] = recordOp('narrow', [t], () => ({
    outputs: [t.narrow(dim, start, length)],
    backward: ([g]) => [padAlong(g!, dim, start, size - start - length)],
  }));
  return out;
}

export function expand(t: Tensor, shape: number[]): Tensor {
  const from = [...t.shape];
  const [out] = recordOp('expand', [t], () => ({
    outputs: [t.expand(shape)],
    backward: ([g]) => [sumTo(g!, from)],
  }));
  return out;
}

export function contiguous(t: Tensor): Tensor {
  const [out] = recordOp('contiguous', [t], () => ({ outputs: [t.contiguous()], backward: ([g]) => [g] }));
  return out;
}

export function concatOp(tensors: readonly Tensor[], dim: number): Tensor {
  const nd = tensors[0]?.ndim ?? 0;
  const d = dim < 0 ? dim + nd : dim;
  const sizes = tensors.map((t) => t.shape[d]);
  const need = tensors.map((t) => t.requiresGrad);
  const [out] = recordOp('concat', tensors, () => ({
    outputs: [concat(tensors, dim)],
    backward: ([g]) => {
      let start = 0;
      return sizes.map((n, i) => {
        const s = start;
        start += n;
        return need[i] ? g!.narrow(d, s, n) : null;
      });
    },
  }));
  return out;
}
