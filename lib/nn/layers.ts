/**
 * The layers of VisionLLaMA under their released parameter names. Weights
 * are initialized randomly (seeded) and are usually replaced by a checkpoint.
 */
import { randn, ones, zeros } from '../creation';
import { DType } from '../dtype';
import { Tensor } from '../tensor';
import { Module } from './module';

export interface InitOptions {
  seed: number;
  device?: string;
}

/** Seeds each parameter from the model seed and a running counter. */
export class Initializer {
  #next = 0;
  /** `layerScale`: the initial LayerScale γ (1e-4 as in the released recipes; larger trains small models faster). */
  constructor(readonly seed: number, readonly device?: string, readonly layerScale = 1e-4) {}
  normal(shape: number[], std = 0.02): Tensor {
    return randn(shape, { seed: this.seed * 100003 + this.#next++, std, device: this.device });
  }
  zeros(shape: number[]): Tensor { return zeros(shape, { device: this.device }); }
  ones(shape: number[]): Tensor { return ones(shape, { device: this.device }); }
  full(shape: number[], v: number): Tensor { return this.ones(shape).mul(v); }
}

/** y = x·Wᵀ + b with W [out, in]. */
export class Linear extends Module {
  constructor(readonly inFeatures: number, readonly outFeatures: number, readonly hasBias: boolean, init: Initializer) {
    super();
    this.param('weight', init.normal([outFeatures, inFeatures]));
    if (hasBias) this.param('bias', init.zeros([outFeatures]));
  }
  get weight(): Tensor { return this.p('weight'); }
  get bias(): Tensor | undefined { return this.hasBias ? this.p('bias') : undefined; }
}

export class LayerNorm extends Module {
  constructor(readonly dim: number, readonly eps: number, init: Initializer) {
    super();
    this.param('weight', init.ones([dim]));
    this.param('bias', init.zeros([dim]));
  }
  get weight(): Tensor { return this.p('weight'); }
  get bias(): Tensor { return this.p('bias'); }
}

/** Conv2d with stride = kernel (patch embedding, GSA sub-sampling): weight [out, in, p, p]. */
export class PatchConv extends Module {
  constructor(readonly inChans: number, readonly outChans: number, readonly patch: number, init: Initializer) {
    super();
    this.param('weight', init.normal([outChans, inChans, patch, patch]));
    this.param('bias', init.zeros([outChans]));
  }
  get weight(): Tensor { return this.p('weight'); }
  get bias(): Tensor { return this.p('bias'); }
}

/** Numbered children ('0', '1', ...), as nn.ModuleList names them. */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.child(String(i), m));
  }
}

/** SwiGLU: c_proj(silu(c_fc1 x) ⊙ c_fc2 x), no biases. */
export class SwiGLU extends Module {
  readonly c_fc1: Linear;
  readonly c_fc2: Linear;
  readonly c_proj: Linear;
  constructor(dim: number, hidden: number, init: Initializer) {
    super();
    this.c_fc1 = this.child('c_fc1', new Linear(dim, hidden, false, init));
    this.c_fc2 = this.child('c_fc2', new Linear(dim, hidden, false, init));
    this.c_proj = this.child('c_proj', new Linear(hidden, dim, false, init));
  }
}

/**
 * The inference dtype of packed weights: bf16 or f16 also runs the GEMMs,
 * attention and patch embedding on bf16 / fp16 operands (activations stay
 * f32 between ops, accumulation is f32).
 */
export type WeightDType = Extract<DType, 'f32' | 'bf16' | 'f16'>;
export const WEIGHT_DTYPES: readonly WeightDType[] = ['f32', 'bf16', 'f16'];
