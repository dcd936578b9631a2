/** Plain VisionLLaMA (SPEC §2): a ViT with AS2DRoPE attention, SwiGLU and LayerScale. */
import { concat } from '../creation';
import { ShapeError } from '../errors';
import { convPatch, linear } from '../ops/linalg';
import { PositionSpec } from '../ops/attention';
import { layerNorm } from '../ops/nn';
import { Tensor } from '../tensor';
import { tidy } from '../scope';
import { Initializer, LayerNorm, Linear, ModuleList, PatchConv, WeightDType } from '../nn/layers';
import { Module } from '../nn/module';
import { PlainConfig } from './config';
import { residualNorm, SelfAttentionBlock } from './blocks';
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

  constructor(readonly config: PlainConfig, init: Initializer, readonly weightDType: WeightDType = 'f32') {
    super();
    const { dim, heads, depth, patchSize, inChans, numClasses } = config;
    this.patch_embed = this.child('patch_embed', new PatchEmbed(inChans, dim, patchSize, init));
    this.param('cls_token', init.normal([1, 1, dim]));
    this.blocks = this.child('blocks', new ModuleList(Array.from({ length: depth }, () => new SelfAttentionBlock(dim, heads, 1e-6, init))));
    this.norm = this.child('norm', new LayerNorm(dim, 1e-6, init));
    this.head = this.child('head', new Linear(dim, numClasses, true, init));
  }

  /** Final normalized tokens [B, 1 + N, C] (class token first) and the class token [B, C]. */
  forwardFeatures(images: Tensor): { tokens: Tensor; cls: Tensor } {
    const { patchSize: p, dim, autoScale, baseSize } = this.config;
    const [B, , H, W] = checkImages(images, this.config.inChans, 'forward');
    if (H % p !== 0 || W % p !== 0) {
      throw new ShapeError(`forward: a plain model takes images whose height and width are multiples of the patch size ${p}; got ${H}x${W}`);
    }
    const gw = W / p;
    const pos: PositionSpec = { grid: { cols: gw, step: autoScale ? baseSize / H : 1, indexOffset: -1 } };
    const blocks = this.blocks.items;
    return tidy(() => {
      const patches = convPatch(images, this.patch_embed.proj.weight, this.patch_embed.proj.bias, { patch: p });
      let x = concat([this.p('cls_token').expand(B, 1, dim), patches], 1);
      let y = blocks.length ? this.normOf(blocks[0].norm1, x) : x;
      blocks.forEach((blk, i) => {
        ({ sum: x, y } = residualNorm(x, blk.attentionBranch(y, pos, this.weightDType), blk.norm2));
        const next = i + 1 < blocks.length ? blocks[i + 1].norm1 : this.norm;
        ({ sum: x, y } = residualNorm(x, blk.mlpBranch(y, this.weightDType), next));
      });
      if (!blocks.length) y = this.normOf(this.norm, x);
      return { tokens: y, cls: y.narrow(1, 0, 1).reshape(B, dim) };
    });
  }

  /** Class logits [B, numClasses]. */
  forward(images: Tensor): Tensor {
    return tidy(() => {
      const { cls } = this.forwardFeatures(images);
      return linear(cls, this.head.weight, { bias: this.head.bias });
    });
  }

  private normOf(n: LayerNorm, x: Tensor): Tensor {
    return layerNorm(x, { weight: n.weight, bias: n.bias, eps: n.eps });
  }
}
