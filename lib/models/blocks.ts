/**
 * Transformer blocks of both architectures (SPEC §2, §3) and their inference
 * path: weights packed once for the GEMM (LayerScale γ folded into the
 * output projections), residual adds fused with the next LayerNorm.
 */
import { attention, splitKV, splitQKV, PositionSpec } from '../ops/attention';
import { linear, packLinear, packSwiGLU, swiglu, convPatch, PackedLinear, PackedSwiGLU } from '../ops/linalg';
import { addLayerNorm, layerNorm, windowMerge, windowPartition } from '../ops/nn';
import { Tensor } from '../tensor';
import { keep } from '../scope';
import { Initializer, LayerNorm, Linear, PatchConv, SwiGLU, WeightDType } from '../nn/layers';
import { Module } from '../nn/module';
import * as F from '../nn/functional';
import { swigluHidden } from './config';

/** A packed output projection with γ folded in: γ ⊙ (x·Wᵀ + b) = x·(γW)ᵀ + γb. */
export interface ScaledProjection {
  weight: PackedLinear;
  bias?: Tensor;
}

export function packScaled(lin: Linear, gamma: Tensor, dtype: WeightDType): ScaledProjection {
  const w = lin.weight.mul(gamma.reshape(-1, 1));
  try {
    return { weight: packLinear(w, { dtype }), bias: lin.bias ? lin.bias.mul(gamma) : undefined };
  } finally {
    w.dispose();
  }
}

export interface PackedMlp {
  fc: PackedSwiGLU;
  proj: ScaledProjection;
}

/** Packed weights belong to the block, not to the tidy() scope that happens to build them. */
function keepPacked(p: Record<string, unknown>): void {
  for (const v of Object.values(p)) {
    if (v && typeof v === 'object' && 'dispose' in v) keep(v as { dispose(): void });
    else if (v && typeof v === 'object') keepPacked(v as Record<string, unknown>);
  }
}

function disposePacked(p: Record<string, unknown> | undefined): void {
  if (!p) return;
  for (const v of Object.values(p)) {
    if (v && typeof v === 'object' && 'dispose' in v) (v as { dispose(): void }).dispose();
    else if (v && typeof v === 'object') disposePacked(v as Record<string, unknown>);
  }
}

/** What every block shares: norms, MLP, LayerScale, and the packed-weight cache. */
export abstract class BlockBase<P extends { mlp: PackedMlp }> extends Module {
  readonly norm1: LayerNorm;
  readonly norm2: LayerNorm;
  readonly mlp: SwiGLU;
  #packed?: P;
  #packedDType?: WeightDType;

  constructor(readonly dim: number, readonly heads: number, eps: number, init: Initializer) {
    super();
    this.norm1 = this.child('norm1', new LayerNorm(dim, eps, init));
    this.norm2 = this.child('norm2', new LayerNorm(dim, eps, init));
    this.mlp = this.child('mlp', new SwiGLU(dim, swigluHidden(dim), init));
    this.param('gamma_1', init.full([dim], init.layerScale));
    this.param('gamma_2', init.full([dim], init.layerScale));
  }

  get gamma1(): Tensor { return this.p('gamma_1'); }
  get gamma2(): Tensor { return this.p('gamma_2'); }

  protected abstract packAttention(dtype: WeightDType): Omit<P, 'mlp'>;

  /** Packed weights for inference, made once per weight set and dtype. */
  packed(dtype: WeightDType): P {
    if (!this.#packed || this.#packedDType !== dtype) {
      this.dropPacked();
      const mlp: PackedMlp = {
        fc: packSwiGLU(this.mlp.c_fc1.weight, this.mlp.c_fc2.weight, { dtype }),
        proj: packScaled(this.mlp.c_proj, this.gamma2, dtype),
      };
      this.#packed = { ...this.packAttention(dtype), mlp } as P;
      keepPacked(this.#packed as unknown as Record<string, unknown>);
      this.#packedDType = dtype;
    }
    return this.#packed;
  }

  private dropPacked(): void {
    disposePacked(this.#packed as unknown as Record<string, unknown>);
    this.#packed = undefined;
  }

  protected onModeChange(): void { this.dropPacked(); }

  /** Stochastic-depth rate of this block's branches in training (0: off). */
  dropPathRate = 0;
  /** Per-sample keep masks for the next training forward (set by the model from its RNG). */
  dropPathMask: Float32Array | null = null;

  /** A branch output with LayerScale and stochastic depth applied (recorded). */
  protected scaleBranch(branch: Tensor, gamma: Tensor): Tensor {
    const scaled = branch.mul(gamma);
    if (this.dropPathRate <= 0 || !this.dropPathMask) return scaled;
    const out = F.dropPath(scaled, this.dropPathMask, this.dropPathRate);
    scaled.dispose();
    return out;
  }

  /** Training path of the MLP branch: γ2 ⊙ SwiGLU(y), differentiable in y and the weights. */
  trainMlp(y: Tensor): Tensor {
    const m = F.swiglu(y, this.mlp.c_fc1.weight, this.mlp.c_fc2.weight, this.mlp.c_proj.weight);
    try {
      return this.scaleBranch(m, this.gamma2);
    } finally {
      m.dispose();
    }
  }

  /** The MLP branch (γ2 folded in) of normalized tokens. */
  mlpBranch(y: Tensor, dtype: WeightDType): Tensor {
    const p = this.packed(dtype).mlp;
    // On the CPU the down projection streams the hidden activations from
    // memory; bf16 ones (which it would round to anyway) halve that traffic.
    const h = swiglu(y, p.fc, { dtype: dtype === 'bf16' && y.device === 'cpu' ? 'bf16' : 'f32' });
    try {
      return linear(h, p.proj.weight, { bias: p.proj.bias });
    } finally {
      h.dispose();
    }
  }
}

/** Plain self-attention over all tokens (qkv, proj). */
export class SelfAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  constructor(dim: number, init: Initializer) {
    super();
    this.qkv = this.child('qkv', new Linear(dim, 3 * dim, true, init));
    this.proj = this.child('proj', new Linear(dim, dim, true, init));
  }
}

export interface PackedSelfAttention {
  qkv: PackedLinear;
  proj: ScaledProjection;
  mlp: PackedMlp;
}

/** A plain block (also the pyramid's LSA block, whose attention runs on windows). */
export class SelfAttentionBlock extends BlockBase<PackedSelfAttention> {
  readonly attn: SelfAttention;
  constructor(dim: number, heads: number, eps: number, init: Initializer) {
    super(dim, heads, eps, init);
    this.attn = this.child('attn', new SelfAttention(dim, init));
  }

  protected packAttention(dtype: WeightDType): Omit<PackedSelfAttention, 'mlp'> {
    return { qkv: packLinear(this.attn.qkv.weight, { dtype }), proj: packScaled(this.attn.proj, this.gamma1, dtype) };
  }

  /** The attention branch (γ1 folded in) of normalized tokens y [B, N, C]. */
  attentionBranch(y: Tensor, pos: PositionSpec, dtype: WeightDType): Tensor {
    const p = this.packed(dtype);
    const qkv = linear(y, p.qkv, { bias: this.attn.qkv.bias });
    const { q, k, v } = splitQKV(qkv, this.heads);
    const a = attention(q, k, v, { qPos: pos, kPos: pos, precision: dtype });
    for (const t of [qkv, q, k, v]) t.dispose();
    try {
      return linear(a, p.proj.weight, { bias: p.proj.bias });
    } finally {
      a.dispose();
    }
  }

  /** Training path of the attention branch: γ1 ⊙ proj(attn(qkv(y))). */
  trainAttention(y: Tensor, pos: PositionSpec): Tensor {
    const qkv = F.linear(y, this.attn.qkv.weight, this.attn.qkv.bias);
    const a = F.attentionQKV(qkv, this.heads, { qPos: pos, kPos: pos });
    const o = F.linear(a, this.attn.proj.weight, this.attn.proj.bias);
    try {
      return this.scaleBranch(o, this.gamma1);
    } finally {
      for (const t of [qkv, a, o]) t.dispose();
    }
  }

  /** Training path of LSA (SPEC §3). */
  trainWindow(y: Tensor, H: number, W: number, ws: number): Tensor {
    const win = F.windowPartition(y, H, W, ws);
    const qkv = F.linear(win, this.attn.qkv.weight, this.attn.qkv.bias);
    const pos: PositionSpec = { grid: { cols: ws } };
    const a = F.attentionQKV(qkv, this.heads, { qPos: pos, kPos: pos });
    const merged = F.windowMerge(a, y.shape[0], H, W, ws);
    const o = F.linear(merged, this.attn.proj.weight, this.attn.proj.bias);
    try {
      return this.scaleBranch(o, this.gamma1);
    } finally {
      for (const t of [win, qkv, a, merged, o]) t.dispose();
    }
  }

  /** LSA: attention inside ws×ws windows of the [B, H·W, C] map (SPEC §3). */
  windowBranch(y: Tensor, H: number, W: number, ws: number, dtype: WeightDType): Tensor {
    const p = this.packed(dtype);
    const win = windowPartition(y, H, W, ws);
    const qkv = linear(win, p.qkv, { bias: this.attn.qkv.bias });
    const { q, k, v } = splitQKV(qkv, this.heads);
    const pos: PositionSpec = { grid: { cols: ws } };
    const a = attention(q, k, v, { qPos: pos, kPos: pos, precision: dtype });
    const merged = windowMerge(a, y.shape[0], H, W, ws);
    for (const t of [win, qkv, q, k, v, a]) t.dispose();
    try {
      return linear(merged, p.proj.weight, { bias: p.proj.bias });
    } finally {
      merged.dispose();
    }
  }
}

/** GSA: queries from every token, keys/values from an sr×sr sub-sampled map. */
export class SubsampledAttention extends Module {
  readonly q: Linear;
  readonly kv: Linear;
  readonly proj: Linear;
  readonly sr?: PatchConv;
  readonly norm?: LayerNorm;
  constructor(dim: number, readonly ratio: number, init: Initializer) {
    super();
    this.q = this.child('q', new Linear(dim, dim, true, init));
    this.kv = this.child('kv', new Linear(dim, 2 * dim, true, init));
    this.proj = this.child('proj', new Linear(dim, dim, true, init));
    if (ratio > 1) {
      this.sr = this.child('sr', new PatchConv(dim, dim, ratio, init));
      this.norm = this.child('norm', new LayerNorm(dim, 1e-5, init));
    }
  }
}

export interface PackedSubsampled {
  q: PackedLinear;
  kv: PackedLinear;
  proj: ScaledProjection;
  mlp: PackedMlp;
}

export class SubsampledAttentionBlock extends BlockBase<PackedSubsampled> {
  readonly attn: SubsampledAttention;
  constructor(dim: number, heads: number, readonly ratio: number, readonly keyLayout: 'full-width' | 'reduced', init: Initializer) {
    super(dim, heads, 1e-5, init);
    this.attn = this.child('attn', new SubsampledAttention(dim, ratio, init));
  }

  protected packAttention(dtype: WeightDType): Omit<PackedSubsampled, 'mlp'> {
    return {
      q: packLinear(this.attn.q.weight, { dtype }),
      kv: packLinear(this.attn.kv.weight, { dtype }),
      proj: packScaled(this.attn.proj, this.gamma1, dtype),
    };
  }

  /** Training path of GSA: the same computation as attentionBranch, recorded. */
  trainAttention(y: Tensor, H: number, W: number): Tensor {
    const [B, , C] = y.shape;
    const sr = this.ratio;
    const temps: Tensor[] = [];
    const keep = <T extends Tensor>(t: T) => (temps.push(t), t);
    try {
      const q = keep(F.linear(y, this.attn.q.weight, this.attn.q.bias));
      let r = y;
      let Wr = W;
      if (this.attn.sr && this.attn.norm) {
        const hr = Math.floor(H / sr), wr = Math.floor(W / sr);
        const map = keep(keep(y.view(B, H, W, C)).permute(0, 3, 1, 2));
        const cropped = hr * sr === H && wr * sr === W ? map : keep(keep(map.narrow(2, 0, hr * sr)).narrow(3, 0, wr * sr));
        const tokens = keep(F.convPatch(cropped, this.attn.sr.weight, this.attn.sr.bias, sr));
        r = keep(F.layerNorm(tokens, { weight: this.attn.norm.weight, bias: this.attn.norm.bias, eps: 1e-5 }));
        Wr = wr;
      }
      const kv = keep(F.linear(r, this.attn.kv.weight, this.attn.kv.bias));
      const cols = this.keyLayout === 'full-width' ? W : Wr;
      const a = keep(F.attentionKV(q, kv, this.heads, {
        qPos: { grid: { cols: W } },
        kPos: { grid: { cols, step: sr, bias: 1 - 1 / sr } },
      }));
      const o = keep(F.linear(a, this.attn.proj.weight, this.attn.proj.bias));
      return this.scaleBranch(o, this.gamma1);
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  attentionBranch(y: Tensor, H: number, W: number, dtype: WeightDType): Tensor {
    const p = this.packed(dtype);
    const [B, N, C] = y.shape;
    const sr = this.ratio;
    const temps: Tensor[] = [];
    const keep = <T extends Tensor>(t: T) => (temps.push(t), t);
    try {
      const qFlat = keep(linear(y, p.q, { bias: this.attn.q.bias }));
      const q = keep(qFlat.view(B, N, this.heads, C / this.heads));
      let r = y;
      let Wr = W;
      if (this.attn.sr && this.attn.norm) {
        // The sr×sr conv reads the token map as [B, C, H, W] (a permuted view) and
        // drops rows/columns beyond a multiple of sr, as Conv2d does.
        const hr = Math.floor(H / sr), wr = Math.floor(W / sr);
        const map = keep(y.view(B, H, W, C).permute(0, 3, 1, 2));
        const cropped = keep(map.narrow(2, 0, hr * sr).narrow(3, 0, wr * sr));
        const tokens = keep(convPatch(cropped, this.attn.sr.weight, this.attn.sr.bias, { patch: sr, precision: dtype }));
        r = keep(layerNorm(tokens, { weight: this.attn.norm.weight, bias: this.attn.norm.bias, eps: 1e-5 }));
        Wr = wr;
      }
      const kv = keep(linear(r, p.kv, { bias: this.attn.kv.bias }));
      const { k, v } = splitKV(kv, this.heads);
      keep(k);
      keep(v);
      const cols = this.keyLayout === 'full-width' ? W : Wr;
      const a = keep(attention(q, k, v, {
        qPos: { grid: { cols: W } },
        kPos: { grid: { cols, step: sr, bias: 1 - 1 / sr } },
        precision: dtype,
      }));
      return linear(a, p.proj.weight, { bias: p.proj.bias });
    } finally {
      for (const t of temps) if (t !== y) t.dispose();
    }
  }
}

/** The residual update fused with the next LayerNorm: sum = x + branch, y = LN(sum). Records in training. */
export function residualNorm(x: Tensor, branch: Tensor, norm: LayerNorm): { sum: Tensor; y: Tensor } {
  const p = { weight: norm.weight, bias: norm.bias, eps: norm.eps };
  return x.requiresGrad || branch.requiresGrad ? F.addLayerNorm(x, branch, p) : addLayerNorm(x, branch, p);
}

/** LayerNorm with a module's parameters; records in training. */
export function applyNorm(x: Tensor, norm: LayerNorm): Tensor {
  const p = { weight: norm.weight, bias: norm.bias, eps: norm.eps };
  return x.requiresGrad || norm.weight.requiresGrad ? F.layerNorm(x, p) : layerNorm(x, p);
}
