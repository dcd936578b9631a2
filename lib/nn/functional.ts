/**
 * Differentiable versions of the transformer ops: the forward runs the same
 * fused kernels as inference, and (when an input requires grad) records a
 * node whose backward runs the matching backward kernels.
 */
import '../autograd';  // registers the recording hooks on Tensor
import { recordOp } from '../autograd/node';
import { padAlong, sumTo } from '../autograd/tensor-ops';
import { ArgumentError, ShapeError } from '../errors';
import { mathPrecision } from '../autocast';
import { attention, attentionBackward, splitKV, splitQKV, PositionSpec } from '../ops/attention';
import { convPatch as convPatchOp, linear as linearOp, matmul } from '../ops/linalg';
import {
  addLayerNormWithStats, gelu as geluOp, silu as siluOp, softmax as softmaxOp, geluBackward, layerNormBackward, layerNormWithStats, siluBackward,
  swigluGate as swigluGateOp, swigluGateBackward, windowMerge as windowMergeOp, windowPartition as windowPartitionOp,
} from '../ops/nn';
import { Tensor } from '../tensor';
import { concat, tensor } from '../creation';
import { native } from '../native';

/** Rows of a [..., n] tensor as a 2-D [rows, n] tensor (a view when possible). */
function rows2d(t: Tensor): Tensor {
  const n = t.shape[t.ndim - 1];
  return t.reshape(-1, n);
}

/** x·Wᵀ + b for x [..., in], weight [out, in], bias [out]. Under autocast the backward GEMMs use the forward's precision. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const [y] = recordOp('linear', [x, weight, bias], () => {
    const needX = x.requiresGrad, needW = weight.requiresGrad, needB = bias?.requiresGrad ?? false;
    const xShape = [...x.shape];
    const precision = mathPrecision();
    return {
      outputs: [linearOp(x, weight, { bias, precision })],
      save: [needW ? x : null, needX ? weight : null].filter((t): t is Tensor => t !== null),
      backward: ([g], saved) => {
        let i = 0;
        const sx = needW ? saved[i++] : null;
        const sw = needX ? saved[i++] : null;
        // dx = g·W; dW = gᵀ·x over all rows; db = Σ_rows g (one GEMM each over the flattened rows)
        const g2 = rows2d(g!);
        let dx: Tensor | null = null;
        if (needX) {
          const d = matmul(g2, sw!, { precision });
          dx = d.view(xShape);
          d.dispose();
        }
        let dw: Tensor | null = null;
        if (needW) {
          const x2 = rows2d(sx!);
          const gt = g2.transpose();
          dw = matmul(gt, x2, { precision });
          for (const t of [x2, gt]) t.dispose();
        }
        const db = needB ? g2.sum(0) : null;
        g2.dispose();
        return [dx, dw, db];
      },
    };
  });
  return y;
}

export interface NormParams {
  weight?: Tensor | null;
  bias?: Tensor | null;
  eps: number;
}

/** The parameter gradients of a LayerNorm from layerNormBackward's output. */
function normGrads(r: { dweight?: Tensor; dbias?: Tensor }, needW: boolean, needB: boolean): [Tensor | null, Tensor | null] {
  const dw = needW ? r.dweight ?? null : null;
  const db = needB ? r.dbias ?? null : null;
  if (!needW) r.dweight?.dispose();
  if (!needB) r.dbias?.dispose();
  return [dw, db];
}

/** LayerNorm over the last dim. */
export function layerNorm(x: Tensor, p: NormParams): Tensor {
  const { weight = null, bias = null, eps } = p;
  const [y] = recordOp('layerNorm', [x, weight, bias], () => {
    const { y: out, mean, rstd } = layerNormWithStats(x, { weight, bias, eps });
    const needW = weight?.requiresGrad ?? false, needB = bias?.requiresGrad ?? false;
    const hasW = weight !== null;
    return {
      outputs: [out],
      save: [x, mean, rstd, ...(hasW ? [weight!] : [])],
      backward: ([g], [sx, m, r, w]) => {
        const res = layerNormBackward(g!, sx, m, r, hasW ? w : null);
        return [res.dx, ...normGrads(res, needW, needB)];
      },
    };
  });
  return y;
}

/** The residual update and the next LayerNorm in one pass: sum = x + r, y = LN(sum). */
export function addLayerNorm(x: Tensor, r: Tensor, p: NormParams): { sum: Tensor; y: Tensor } {
  const { weight = null, bias = null, eps } = p;
  const [sum, y] = recordOp('addLayerNorm', [x, r, weight, bias], () => {
    const o = addLayerNormWithStats(x, r, { weight, bias, eps });
    const needW = weight?.requiresGrad ?? false, needB = bias?.requiresGrad ?? false;
    const hasW = weight !== null;
    return {
      outputs: [o.sum, o.y],
      save: [o.sum, o.mean, o.rstd, ...(hasW ? [weight!] : [])],
      backward: ([gSum, gy], [s, m, rs, w]) => {
        let ds: Tensor | null = gSum;
        let dw: Tensor | null = null, db: Tensor | null = null;
        if (gy) {
          const res = layerNormBackward(gy, s, m, rs, hasW ? w : null);
          [dw, db] = normGrads(res, needW, needB);
          if (ds) {
            ds = ds.add(res.dx);
            res.dx.dispose();
          } else {
            ds = res.dx;
          }
        }
        return [ds, ds, dw, db];
      },
    };
  });
  return { sum, y };
}

/** Softmax over the last dim; backward: dx = y ⊙ (g − Σ g⊙y). */
export function softmax(x: Tensor): Tensor {
  const last = x.ndim - 1;
  const [y] = recordOp('softmax', [x], () => {
    const out = softmaxOp(x);
    return {
      outputs: [out],
      save: [out],
      backward: ([g], [sy]) => {
        const gy = g!.mul(sy);
        const s = gy.sum(last, { keepdim: true });
        const d = g!.sub(s);
        try {
          return [d.mul(sy)];
        } finally {
          for (const t of [gy, s, d]) t.dispose();
        }
      },
    };
  });
  return y;
}

export function silu(x: Tensor): Tensor {
  const [y] = recordOp('silu', [x], () => ({
    outputs: [siluOp(x)],
    save: [x],
    backward: ([g], [sx]) => [siluBackward(g!, sx)],
  }));
  return y;
}

export function gelu(x: Tensor): Tensor {
  const [y] = recordOp('gelu', [x], () => ({
    outputs: [geluOp(x)],
    save: [x],
    backward: ([g], [sx]) => [geluBackward(g!, sx)],
  }));
  return y;
}

/** silu(a[..., :H]) ⊙ a[..., H:] for a [..., 2H]. */
export function swigluGate(a: Tensor): Tensor {
  const [h] = recordOp('swigluGate', [a], () => ({
    outputs: [swigluGateOp(a)],
    save: [a],
    backward: ([g], [sa]) => [swigluGateBackward(g!, sa)],
  }));
  return h;
}

/**
 * The SwiGLU feed-forward c_proj(silu(x·W1ᵀ) ⊙ x·W2ᵀ): one GEMM against
 * [W1; W2] for both input projections, the gate in one fused pass.
 */
export function swiglu(x: Tensor, w1: Tensor, w2: Tensor, wProj: Tensor): Tensor {
  const w12 = concatRows(w1, w2);
  const a = linear(x, w12);
  const h = swigluGate(a);
  const y = linear(h, wProj);
  for (const t of [w12, a, h]) t.dispose();
  return y;
}

function concatRows(a: Tensor, b: Tensor): Tensor {
  return concat([a, b], 0);  // records when the weights require grad
}

/** x [B, C, H, W] (any strides) → its non-overlapping p×p patches [B·gh·gw, C·p·p], row-major grid. */
function patchesOf(x: Tensor, p: number): Tensor {
  const [B, C, H, W] = x.shape;
  const gh = H / p, gw = W / p;
  const [s0, s1, s2, s3] = x.strides;
  const v = new Tensor(native().asStrided(x.handle('convPatch'), [B, gh, gw, C, p, p],
    [s0, p * s2, p * s3, s1, s2, s3], x.offset));
  try {
    return v.reshape(B * gh * gw, C * p * p);
  } finally {
    v.dispose();
  }
}

/** Conv2d with stride = kernel = p (patch embedding, GSA reduction) → tokens [B, gh·gw, O]. */
export function convPatch(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, p: number): Tensor {
  const [y] = recordOp('convPatch', [x, weight, bias], () => {
    const needX = x.requiresGrad, needW = weight.requiresGrad, needB = bias?.requiresGrad ?? false;
    const [B, C, H, W] = x.shape;
    const O = weight.shape[0];
    const precision = mathPrecision();
    return {
      outputs: [convPatchOp(x, weight, bias, { patch: p, precision })],
      save: [needW ? x : null, needX ? weight : null].filter((t): t is Tensor => t !== null),
      backward: ([g], saved) => {
        let i = 0;
        const sx = needW ? saved[i++] : null;
        const sw = needX ? saved[i++] : null;
        const g2 = g!.reshape(-1, O);
        let dx: Tensor | null = null, dw: Tensor | null = null, db: Tensor | null = null;
        if (needX) {
          const w2 = sw!.reshape(O, C * p * p);
          const dp = matmul(g2, w2, { precision });  // [B·gh·gw, C·p·p]
          const v = dp.view(B, H / p, W / p, C, p, p).permute(0, 3, 1, 4, 2, 5);
          const c = v.contiguous();
          dx = c.view(B, C, H, W);
          for (const t of [w2, dp, v, c]) t.dispose();
        }
        if (needW) {
          const pt = patchesOf(sx!, p);
          const gt = g2.transpose();
          const d = matmul(gt, pt, { precision });
          dw = d.view(O, C, p, p);
          for (const t of [pt, gt, d]) t.dispose();
        }
        if (needB) db = g2.sum(0);
        g2.dispose();
        return [dx, dw, db];
      },
    };
  });
  return y;
}

export interface AttentionPositions {
  qPos: PositionSpec;
  kPos: PositionSpec;
}

function grid(spec: PositionSpec, name: string): PositionSpec {
  if (!spec || typeof spec !== 'object' || !('grid' in spec)) {
    throw new ArgumentError(`attention: ${name} must be a grid rule {grid: {...}} in a recorded op (explicit position tensors are not kept)`);
  }
  return spec;
}

/**
 * Self-attention from a packed qkv projection [B, N, 3C] ([q|k|v][head][d])
 * → [B, N, C]. Backward writes the gradient straight into the qkv layout.
 */
export function attentionQKV(qkv: Tensor, heads: number, pos: AttentionPositions): Tensor {
  const qPos = grid(pos.qPos, 'qPos'), kPos = grid(pos.kPos, 'kPos');
  const [out] = recordOp('attention', [qkv], () => {
    const { q, k, v } = splitQKV(qkv, heads);
    const precision = mathPrecision();
    try {
      const r = attention(q, k, v, { qPos, kPos, returnLse: true, precision });
      return {
        outputs: [r.out],
        save: [qkv, r.out, r.lse],
        backward: ([g], [sqkv, so, lse]) => {
          const s = splitQKV(sqkv, heads);
          try {
            const d = attentionBackward(g!, s.q, s.k, s.v, so, lse, { qPos, kPos, packed: 'qkv', precision });
            for (const t of [d.dq, d.dk, d.dv]) t.dispose();
            return [d.packed!];
          } finally {
            for (const t of [s.q, s.k, s.v]) t.dispose();
          }
        },
      };
    } finally {
      for (const t of [q, k, v]) t.dispose();
    }
  });
  return out;
}

/** GSA attention: queries q [B, N, C], keys/values from a packed kv [B, M, 2C] → [B, N, C]. */
export function attentionKV(q: Tensor, kv: Tensor, heads: number, pos: AttentionPositions): Tensor {
  const qPos = grid(pos.qPos, 'qPos'), kPos = grid(pos.kPos, 'kPos');
  const [B, N, C] = q.shape;
  if (C % heads !== 0) throw new ShapeError(`attention: ${C} channels do not split into ${heads} heads`);
  const D = C / heads;
  const [out] = recordOp('attention', [q, kv], () => {
    const q4 = q.view(B, N, heads, D);
    const { k, v } = splitKV(kv, heads);
    const precision = mathPrecision();
    try {
      const r = attention(q4, k, v, { qPos, kPos, returnLse: true, precision });
      return {
        outputs: [r.out],
        save: [q, kv, r.out, r.lse],
        backward: ([g], [sq, skv, so, lse]) => {
          const sq4 = sq.view(B, N, heads, D);
          const s = splitKV(skv, heads);
          try {
            const d = attentionBackward(g!, sq4, s.k, s.v, so, lse, { qPos, kPos, packed: 'kv', precision });
            d.dk.dispose();
            d.dv.dispose();
            const dq = d.dq.view(B, N, C);
            d.dq.dispose();
            return [dq, d.packed!];
          } finally {
            for (const t of [sq4, s.k, s.v]) t.dispose();
          }
        },
      };
    } finally {
      for (const t of [q4, k, v]) t.dispose();
    }
  });
  return out;
}

/** [B, H·W, C] → ws×ws windows [B·nh·nw, ws·ws, C] (zero padding); backward merges. */
export function windowPartition(x: Tensor, H: number, W: number, ws: number): Tensor {
  const B = x.shape[0];
  const [y] = recordOp('windowPartition', [x], () => ({
    outputs: [windowPartitionOp(x, H, W, ws)],
    backward: ([g]) => [windowMergeOp(g!, B, H, W, ws)],
  }));
  return y;
}

export function windowMerge(x: Tensor, B: number, H: number, W: number, ws: number): Tensor {
  const [y] = recordOp('windowMerge', [x], () => ({
    outputs: [windowMergeOp(x, B, H, W, ws)],
    backward: ([g]) => [windowPartitionOp(g!, H, W, ws)],
  }));
  return y;
}

/**
 * Stochastic depth: each sample's branch is dropped with probability `rate`
 * and the kept ones scaled by 1/(1−rate). `keep` holds one 0/1 per sample.
 */
export function dropPath(x: Tensor, keepMask: Float32Array, rate: number): Tensor {
  if (rate <= 0) return x;
  const B = x.shape[0];
  if (keepMask.length !== B) throw new ShapeError(`dropPath: ${keepMask.length} mask values for a batch of ${B}`);
  const scale = tensor(keepMask.map((k) => k / (1 - rate)), [B, ...x.shape.slice(1).map(() => 1)], { device: x.device });
  try {
    return x.mul(scale);
  } finally {
    scale.dispose();
  }
}

export { padAlong, sumTo };
