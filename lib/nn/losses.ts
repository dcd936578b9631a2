/** Classification losses with their fused forward/backward kernels (lib/ops/loss). */
import '../autograd';  // registers the recording hooks on Tensor
import { tensor } from '../creation';
import { ArgumentError, DTypeError, ShapeError } from '../errors';
import { recordOp } from '../autograd/node';
import {
  bceWithLogitsBackward, bceWithLogitsForward, crossEntropyBackward, crossEntropyForward,
  softCrossEntropyBackward, softCrossEntropyForward,
} from '../ops/loss';
import { Tensor } from '../tensor';

export type Reduction = 'mean' | 'sum' | 'none';

export interface CrossEntropyOptions {
  /** ε: the target puts 1 − ε on the label and ε/K on every class. */
  labelSmoothing?: number;
  reduction?: Reduction;
}

function checkReduction(r: unknown, op: string): Reduction {
  if (r === undefined) return 'mean';
  if (r !== 'mean' && r !== 'sum' && r !== 'none') throw new ArgumentError(`${op}: reduction must be 'mean', 'sum' or 'none', got ${String(r)}`);
  return r;
}

function checkLogits(logits: unknown, op: string): Tensor {
  if (!(logits instanceof Tensor)) throw new ArgumentError(`${op}: logits must be a Tensor`);
  if (logits.ndim !== 2) throw new ShapeError(`${op}: logits must be [batch, classes], got ${logits.describe()}`);
  if (logits.dtype !== 'f32') throw new DTypeError(`${op}: logits must be f32, got ${logits.describe()}`);
  return logits;
}

/** Integer labels as a tensor on the logits' device (arrays are copied once). */
function labelTensor(labels: Tensor | Int32Array | readonly number[], logits: Tensor, op: string): { t: Tensor; owned: boolean } {
  let t: Tensor;
  let owned = false;
  if (labels instanceof Tensor) {
    t = labels;
  } else if (labels instanceof Int32Array || Array.isArray(labels)) {
    const arr = labels instanceof Int32Array ? labels : Int32Array.from(labels as number[]);
    t = tensor(arr, [arr.length], { dtype: 'i32', device: logits.device });
    owned = true;
  } else {
    throw new ArgumentError(`${op}: labels must be a Tensor (i32/i64), an Int32Array or an array of integers`);
  }
  if (t.dtype !== 'i32' && t.dtype !== 'i64') throw new DTypeError(`${op}: labels must be i32 or i64 class indices, got ${t.describe()}`);
  if (t.ndim !== 1 || t.shape[0] !== logits.shape[0]) {
    if (owned) t.dispose();
    throw new ShapeError(`${op}: expected ${logits.shape[0]} labels (one per row of ${logits.describe()}), got ${t.describe()}`);
  }
  return { t, owned };
}

/** Reduces per-row losses; returns the loss and the per-row weight of d(loss). */
function reduce(rows: Tensor, reduction: Reduction): Tensor {
  if (reduction === 'none') return rows;
  const s = rows.sum();
  if (reduction === 'sum') return s;
  try { return s.mul(1 / rows.shape[0]); } finally { s.dispose(); }
}

/** The per-row gradient weights from the gradient of the reduced loss. */
function rowGrads(g: Tensor, rows: number, reduction: Reduction): Tensor {
  if (reduction === 'none') return g;
  const v = g.reshape([1]).expand([rows]);
  try { return v.mul(reduction === 'mean' ? 1 / rows : 1); } finally { v.dispose(); }
}

/**
 * Cross-entropy of logits [B, K] against integer labels [B], with optional
 * label smoothing; mean over the batch by default.
 */
export function crossEntropy(logits: Tensor, labels: Tensor | Int32Array | readonly number[], options: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  checkLogits(logits, op);
  const reduction = checkReduction(options.reduction, op);
  const eps = options.labelSmoothing ?? 0;
  if (typeof eps !== 'number' || !(eps >= 0 && eps < 1)) throw new ArgumentError(`${op}: labelSmoothing must be in [0, 1), got ${String(eps)}`);
  const lab = labelTensor(labels, logits, op);
  const B = logits.shape[0];
  try {
    const [out] = recordOp(op, [logits], () => {
      const { loss, lse } = crossEntropyForward(logits, lab.t, { labelSmoothing: eps });
      const y = reduce(loss, reduction);
      if (y !== loss) loss.dispose();
      return {
        outputs: [y],
        save: [logits, lse, lab.t],
        backward: ([g], [z, l, t]) => {
          const w = rowGrads(g!, B, reduction);
          try {
            return [crossEntropyBackward(w, z, l, t, { labelSmoothing: eps })];
          } finally {
            if (w !== g) w.dispose();
          }
        },
      };
    });
    return out;
  } finally {
    if (lab.owned) lab.t.dispose();
  }
}

function checkTargets(targets: unknown, logits: Tensor, op: string): Tensor {
  if (!(targets instanceof Tensor)) throw new ArgumentError(`${op}: targets must be a Tensor`);
  if (targets.dtype !== 'f32') throw new DTypeError(`${op}: targets must be f32, got ${targets.describe()}`);
  if (targets.ndim !== logits.ndim || targets.shape.some((d, i) => d !== logits.shape[i])) {
    throw new ShapeError(`${op}: targets ${targets.describe()} must have the shape of the logits ${logits.describe()}`);
  }
  return targets;
}

/** Cross-entropy against soft targets [B, K] (mixup/cutmix). */
export function softTargetCrossEntropy(logits: Tensor, targets: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  const op = 'softTargetCrossEntropy';
  checkLogits(logits, op);
  checkTargets(targets, logits, op);
  const reduction = checkReduction(options.reduction, op);
  const B = logits.shape[0];
  const [out] = recordOp(op, [logits], () => {
    const { loss, lse } = softCrossEntropyForward(logits, targets);
    const y = reduce(loss, reduction);
    if (y !== loss) loss.dispose();
    return {
      outputs: [y],
      save: [logits, lse, targets],
      backward: ([g], [z, l, t]) => {
        const w = rowGrads(g!, B, reduction);
        try {
          return [softCrossEntropyBackward(w, z, l, t)];
        } finally {
          if (w !== g) w.dispose();
        }
      },
    };
  });
  return out;
}

/** Binary cross-entropy on logits (the DeiT-III recipe: one-hot or mixed targets), mean over all elements by default. */
export function binaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  const op = 'binaryCrossEntropyWithLogits';
  if (!(logits instanceof Tensor)) throw new ArgumentError(`${op}: logits must be a Tensor`);
  checkTargets(targets, logits, op);
  const reduction = checkReduction(options.reduction, op);
  const shape = [...logits.shape];
  const n = logits.size;
  const [out] = recordOp(op, [logits], () => {
    const loss = bceWithLogitsForward(logits, targets);
    const y = reduction === 'none' ? loss : reduction === 'sum' ? loss.sum() : loss.mean();
    if (y !== loss) loss.dispose();
    return {
      outputs: [y],
      save: [logits, targets],
      backward: ([g], [z, t]) => {
        let w = g!;
        if (reduction !== 'none') {
          const v = g!.reshape(shape.map(() => 1)).expand(shape);
          w = v.mul(reduction === 'mean' ? 1 / n : 1);
          v.dispose();
        }
        try {
          return [bceWithLogitsBackward(w, z, t)];
        } finally {
          if (w !== g) w.dispose();
        }
      },
    };
  });
  return out;
}
