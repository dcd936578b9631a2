/** Plain VisionLLaMA (SPEC §2): a ViT with AS2DRoPE attention, SwiGLU and LayerScale. */
import { concat } from '../creation';
import { ShapeError } from '../errors';
import { convPatch, linear } from '../ops/linalg';
import { PositionSpec } from '../ops/attention';
import { Tensor } from '../tensor';
import { tidy } from '../scope';
import { Initializer, LayerNorm, Linear, ModuleList, PatchConv, WeightDType } from '../nn/layers';
import { Module } from '../nn/module';
import { PlainConfig } from './config';
import { applyNorm, residualNorm, SelfAttentionBlock } from './blocks';
import * as F from '../nn/functional';
import { noGrad } from '../autograd/grad-mode';
import { checkpoint } from '../autograd/checkpoint';
import { checkImages } from './input';

class PatchEmbed extends Module {
  readonly proj: PatchConv;
  constructor(inChans: number, dim: number, patch: number, init: Initializer) {
    super();
    this.proj = this.child('proj', new PatchConv(inChans, dim, patch, init));
  }
}

export class PlainVisionLlama extends Module {
  readonly patch_embed: PatchEmbed;
  readonly blocks: ModuleList<SelfAttentionBlock>;
  readonly norm: LayerNorm;
  readonly head: Linear;

  /** Training: keep only each block's inputs and recompute its activations in backward. */
  activationCheckpointing = false;

  constructor(readonly config: PlainConfig, init: Initializer, readonly weightDType: WeightDType = 'f32') {
    super();
    const { dim, heads, depth, patchSize, inChans, numClasses } = config;
    this.patch_embed = this.child('patch_embed', new PatchEmbed(inChans, dim, patchSize, init));
    this.param('cls_token', init.normal([1, 1, dim]));
    this.blocks = this.child('blocks', new ModuleList(Array.from({ length: depth }, () => new SelfAttentionBlock(dim, heads, 1e-6, init))));
    this.norm = this.child('norm', new LayerNorm(dim, 1e-6, init));
    this.head = this.child('head', new Linear(dim, numClasses, true, init));
  }

  /**
   * Final normalized tokens [B, 1 + N, C] (class token first) and the class
   * token [B, C]. In training mode the computation is recorded for backward;
   * in eval mode it runs on packed weights without recording.
   */
  forwardFeatures(images: Tensor): { tokens: Tensor; cls: Tensor } {
    return this.training ? this.features(images, true) : noGrad(() => this.features(images, false));
  }

  private features(images: Tensor, train: boolean): { tokens: Tensor; cls: Tensor } {
    const { patchSize: p, dim, autoScale, baseSize } = this.config;
    const [B, , H, W] = checkImages(images, this.config.inChans, 'forward');
    if (H % p !== 0 || W % p !== 0) {
      throw new ShapeError(`forward: a plain model takes images whose height and width are multiples of the patch size ${p}; got ${H}x${W}`);
    }
    const gw = W / p;
    const pos: PositionSpec = { grid: { cols: gw, step: autoScale ? baseSize / H : 1, indexOffset: -1 } };
    const blocks = this.blocks.items;
    const { weight: pw, bias: pb } = this.patch_embed.proj;
    return tidy(() => {
      const patches = train ? F.convPatch(images, pw, pb, p) : convPatch(images, pw, pb, { patch: p, precision: this.weightDType });
      let x = concat([this.p('cls_token').expand(B, 1, dim), patches], 1);
      let y = blocks.length ? applyNorm(x, blocks[0].norm1) : x;
      blocks.forEach((blk, i) => {
        const next = i + 1 < blocks.length ? blocks[i + 1].norm1 : this.norm;
        // The residual stream x and its normalized copy y go through the block.
        const block = (xi: Tensor, yi: Tensor): Tensor[] => {
          const attn = train ? blk.trainAttention(yi, pos) : blk.attentionBranch(yi, pos, this.weightDType);
          const mid = residualNorm(xi, attn, blk.norm2);
          const mlp = train ? blk.trainMlp(mid.y) : blk.mlpBranch(mid.y, this.weightDType);
          const out = residualNorm(mid.sum, mlp, next);
          return [out.sum, out.y];
        };
        [x, y] = train && this.activationCheckpointing ? checkpoint(block, [x, y]) : block(x, y);
      });
      if (!blocks.length) y = applyNorm(x, this.norm);
      return { tokens: y, cls: y.narrow(1, 0, 1).reshape(B, dim) };
    });
  }

  /** The pooled feature vector [B, C] that the head classifies: the final class token. */
  forwardPooled(images: Tensor): Tensor {
    const run = () => tidy(() => this.features(images, this.training).cls);
    return this.training ? run() : noGrad(run);
  }

  /** Class logits [B, numClasses] of pooled features (forwardPooled's output). */
  forwardHead(pooled: Tensor): Tensor {
    const { weight, bias } = this.head;
    return this.training ? F.linear(pooled, weight, bias) : noGrad(() => linear(pooled, weight, { bias }));
  }

  /** Class logits [B, numClasses]. */
  forward(images: Tensor): Tensor {
    return tidy(() => this.forwardHead(this.forwardPooled(images)));
  }
}
