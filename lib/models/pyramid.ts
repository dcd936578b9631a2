/**
 * Pyramid VisionLLaMA (SPEC §3): four stages of Twins-SVT layout whose blocks
 * alternate locally-grouped (LSA, even) and global sub-sampled (GSA, odd) attention.
 */
import { ShapeError } from '../errors';
import { convPatch, linear } from '../ops/linalg';
import { Tensor } from '../tensor';
import { tidy } from '../scope';
import { Initializer, LayerNorm, Linear, ModuleList, PatchConv, WeightDType } from '../nn/layers';
import { Module } from '../nn/module';
import { PyramidConfig } from './config';
import { applyNorm, residualNorm, SelfAttentionBlock, SubsampledAttentionBlock } from './blocks';
import * as F from '../nn/functional';
import { noGrad } from '../autograd/grad-mode';
import { checkpoint } from '../autograd/checkpoint';
import { checkImages } from './input';

class StagePatchEmbed extends Module {
  readonly proj: PatchConv;
  readonly norm: LayerNorm;
  constructor(inChans: number, dim: number, readonly patch: number, init: Initializer) {
    super();
    this.proj = this.child('proj', new PatchConv(inChans, dim, patch, init));
    this.norm = this.child('norm', new LayerNorm(dim, 1e-5, init));
  }
}

type PyramidBlock = SelfAttentionBlock | SubsampledAttentionBlock;

export interface StageMap {
  /** [B, C, H, W] (a view of the stage's tokens). */
  map: Tensor;
  height: number;
  width: number;
}

export class PyramidVisionLlama extends Module {
  readonly patch_embeds: ModuleList<StagePatchEmbed>;
  readonly blocks: ModuleList<ModuleList<PyramidBlock>>;
  readonly norm: LayerNorm;
  readonly head: Linear;

  /** Training: keep only each block's inputs and recompute its activations in backward. */
  activationCheckpointing = false;

  constructor(readonly config: PyramidConfig, init: Initializer, readonly weightDType: WeightDType = 'f32') {
    super();
    const { dims, depths, heads, srRatios, patchSize, inChans, numClasses, gsaKeyLayout } = config;
    this.patch_embeds = this.child('patch_embeds', new ModuleList(dims.map((d, i) =>
      new StagePatchEmbed(i === 0 ? inChans : dims[i - 1], d, i === 0 ? patchSize : 2, init))));
    this.blocks = this.child('blocks', new ModuleList(dims.map((d, i) => new ModuleList(Array.from({ length: depths[i] }, (_, j) =>
      j % 2 === 0
        ? new SelfAttentionBlock(d, heads[i], 1e-5, init)
        : new SubsampledAttentionBlock(d, heads[i], srRatios[i], gsaKeyLayout, init))))));
    this.norm = this.child('norm', new LayerNorm(dims[3], 1e-5, init));
    this.head = this.child('head', new Linear(dims[3], numClasses, true, init));
  }

  /**
   * The four stage maps [B, C_i, H_i, W_i] and the final tokens of the last
   * stage; recorded for backward in training mode.
   */
  forwardFeatures(images: Tensor): { stages: StageMap[]; tokens: Tensor } {
    return this.training ? this.features(images, true) : noGrad(() => this.features(images, false));
  }

  private features(images: Tensor, train: boolean): { stages: StageMap[]; tokens: Tensor } {
    const [B, , H0, W0] = checkImages(images, this.config.inChans, 'forward');
    const smallest = this.config.patchSize * 8;
    if (H0 < smallest || W0 < smallest) {
      throw new ShapeError(`forward: a pyramid model with patch ${this.config.patchSize} needs images of at least ${smallest}x${smallest} (four stages of /${this.config.patchSize}, /2, /2, /2); got ${H0}x${W0}`);
    }
    const dt = this.weightDType;
    return tidy(() => {
      let map = images;
      let x!: Tensor;
      let H = H0, W = W0;
      const stages: StageMap[] = [];
      this.patch_embeds.items.forEach((pe, s) => {
        const p = pe.patch;
        // Conv2d with stride = kernel drops what does not fill a whole patch.
        H = Math.floor(H / p);
        W = Math.floor(W / p);
        const full = map.shape[2] === H * p && map.shape[3] === W * p;
        const cropped = full ? map : map.narrow(2, 0, H * p).narrow(3, 0, W * p);
        const tokens = train ? F.convPatch(cropped, pe.proj.weight, pe.proj.bias, p) : convPatch(cropped, pe.proj.weight, pe.proj.bias, { patch: p, precision: dt });
        x = applyNorm(tokens, pe.norm);
        const blocks = this.blocks.items[s].items;
        const ws = this.config.windowSizes[s];
        let y = blocks.length ? applyNorm(x, blocks[0].norm1) : x;
        // Fixed for this stage: a checkpointed block runs again during backward, after H and W moved on.
        const h = H, w = W;
        blocks.forEach((blk, j) => {
          const block = (xi: Tensor, yi: Tensor): Tensor[] => {
            const branch = blk instanceof SelfAttentionBlock
              ? (train ? blk.trainWindow(yi, h, w, ws) : blk.windowBranch(yi, h, w, ws, dt))
              : (train ? blk.trainAttention(yi, h, w) : blk.attentionBranch(yi, h, w, dt));
            const mid = residualNorm(xi, branch, blk.norm2);
            const mlp = train ? blk.trainMlp(mid.y) : blk.mlpBranch(mid.y, dt);
            if (j + 1 < blocks.length) {
              const out = residualNorm(mid.sum, mlp, blocks[j + 1].norm1);
              return [out.sum, out.y];
            }
            return [mid.sum.add(mlp)];
          };
          [x, y] = train && this.activationCheckpointing ? checkpoint(block, [x, y]) : block(x, y);
        });
        map = x.view(B, H, W, this.config.dims[s]).permute(0, 3, 1, 2);
        stages.push({ map, height: H, width: W });
      });
      return { stages, tokens: x };
    });
  }

  /** The pooled feature vector [B, C] that the head classifies: LN(mean_tokens(LN(x))), the same LN twice. */
  forwardPooled(images: Tensor): Tensor {
    const train = this.training;
    const run = () => tidy(() => {
      const { tokens } = this.features(images, train);
      return applyNorm(applyNorm(tokens, this.norm).mean(1), this.norm);
    });
    return train ? run() : noGrad(run);
  }

  /** Class logits [B, numClasses] of pooled features (forwardPooled's output). */
  forwardHead(pooled: Tensor): Tensor {
    const { weight, bias } = this.head;
    return this.training ? F.linear(pooled, weight, bias) : noGrad(() => linear(pooled, weight, { bias }));
  }

  /** Class logits [B, numClasses]: head(LN(mean_tokens(LN(x)))). */
  forward(images: Tensor): Tensor {
    return tidy(() => this.forwardHead(this.forwardPooled(images)));
  }
}
