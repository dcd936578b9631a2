/** Normalization, softmax, activations and window layouts (native/ops/nn.h). */
import { ArgumentError } from '../errors';
import { NativeTensorHandle, native } from '../native';
import { Tensor } from '../tensor';
import { optionalTensorArg, tensorArg } from './args';

interface NnNative {
  layerNorm(x: NativeTensorHandle, w: NativeTensorHandle | null, b: NativeTensorHandle | null, eps: number, stats: boolean): NativeTensorHandle[];
  addLayerNorm(x: NativeTensorHandle, r: NativeTensorHandle, w: NativeTensorHandle | null, b: NativeTensorHandle | null, eps: number, stats: boolean): NativeTensorHandle[];
  softmax(x: NativeTensorHandle, lse: boolean): NativeTensorHandle[];
  activation(kind: string, x: NativeTensorHandle): NativeTensorHandle;
  layerNormBackward(dy: NativeTensorHandle, x: NativeTensorHandle, mean: NativeTensorHandle, rstd: NativeTensorHandle, w: NativeTensorHandle | null): NativeTensorHandle[];
  activationBackward(kind: string, dy: NativeTensorHandle, x: NativeTensorHandle): NativeTensorHandle;
  swigluGate(a: NativeTensorHandle): NativeTensorHandle;
  swigluGateBackward(dh: NativeTensorHandle, a: NativeTensorHandle): NativeTensorHandle;
  windowPartition(x: NativeTensorHandle, height: number, width: number, window: number): NativeTensorHandle;
  windowMerge(x: NativeTensorHandle, batch: number, height: number, width: number, window: number): NativeTensorHandle;
}
const nn = () => native() as unknown as NnNative;

export interface LayerNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  /** 1e-6 in the plain model, 1e-5 in the pyramid model (SPEC §2, §3). */
  eps?: number;
}

function affine(op: string, o: LayerNormOptions): [NativeTensorHandle | null, NativeTensorHandle | null, number] {
  const eps = o.eps ?? 1e-6;
  if (typeof eps !== 'number' || !(eps > 0)) throw new ArgumentError(`${op}: eps must be a positive number, got ${eps}`);
  return [o.weight ? o.weight.handle(op) : null, o.bias ? o.bias.handle(op) : null, eps];
}

/** LayerNorm over the last dimension. */
export function layerNorm(x: Tensor, options: LayerNormOptions = {}): Tensor {
  const [w, b, eps] = affine('layerNorm', options);
  return new Tensor(nn().layerNorm(x.handle('layerNorm'), w, b, eps, false)[0]);
}

/** LayerNorm that also returns the row statistics (mean, 1/std) that backward needs. */
export function layerNormWithStats(x: Tensor, options: LayerNormOptions = {}): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const [w, b, eps] = affine('layerNorm', options);
  const [y, mean, rstd] = nn().layerNorm(x.handle('layerNorm'), w, b, eps, true).map((h) => new Tensor(h));
  return { y, mean, rstd };
}

/**
 * The residual update and the next pre-norm in one pass:
 * `sum = x + residual`, `y = LayerNorm(sum)`.
 */
export function addLayerNorm(x: Tensor, residual: Tensor, options: LayerNormOptions = {}): { sum: Tensor; y: Tensor } {
  const [w, b, eps] = affine('addLayerNorm', options);
  const [sum, y] = nn().addLayerNorm(x.handle('addLayerNorm'), residual.handle('addLayerNorm'), w, b, eps, false)
    .map((h) => new Tensor(h));
  return { sum, y };
}

/** addLayerNorm that also returns the row statistics of the sum (for backward). */
export function addLayerNormWithStats(x: Tensor, residual: Tensor, options: LayerNormOptions = {}): { sum: Tensor; y: Tensor; mean: Tensor; rstd: Tensor } {
  const [w, b, eps] = affine('addLayerNorm', options);
  const [sum, y, mean, rstd] = nn().addLayerNorm(x.handle('addLayerNorm'), residual.handle('addLayerNorm'), w, b, eps, true)
    .map((h) => new Tensor(h));
  return { sum, y, mean, rstd };
}

/** Softmax over the last dimension. */
export function softmax(x: Tensor): Tensor {
  return new Tensor(nn().softmax(x.handle('softmax'), false)[0]);
}

/** Softmax and the log-sum-exp of each row (for cross-entropy and backward). */
export function softmaxWithLse(x: Tensor): { y: Tensor; lse: Tensor } {
  const [y, lse] = nn().softmax(x.handle('softmax'), true).map((h) => new Tensor(h));
  return { y, lse };
}

/** x · sigmoid(x) */
export function silu(x: Tensor): Tensor {
  return new Tensor(nn().activation('silu', x.handle('silu')));
}

/** GELU with the exact erf. */
export function gelu(x: Tensor): Tensor {
  return new Tensor(nn().activation('gelu', x.handle('gelu')));
}

/**
 * Gradients of LayerNorm from the forward's row statistics (`layerNormWithStats`,
 * or the stats of addLayerNorm): x and dy [..., C], mean and rstd [...].
 * With a weight, also dweight = Σ dy·x̂ and dbias = Σ dy over the rows ([C];
 * a bias-free LayerNorm ignores dbias). The parameter gradients are summed in
 * fixed row chunks and a fixed order: identical for any thread count.
 */
export function layerNormBackward(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | null):
  { dx: Tensor; dweight?: Tensor; dbias?: Tensor } {
  const op = 'layerNormBackward';
  const [dx, dweight, dbias] = nn().layerNormBackward(tensorArg(dy, op, 'dy'), tensorArg(x, op, 'x'),
    tensorArg(mean, op, 'mean'), tensorArg(rstd, op, 'rstd'), optionalTensorArg(weight, op, 'weight')).map((h) => new Tensor(h));
  return weight ? { dx, dweight, dbias } : { dx };
}

/** dx of silu given dy and the forward's input x: dy·σ(x)·(1 + x·(1 − σ(x))). */
export function siluBackward(dy: Tensor, x: Tensor): Tensor {
  return new Tensor(nn().activationBackward('silu', tensorArg(dy, 'siluBackward', 'dy'), tensorArg(x, 'siluBackward', 'x')));
}

/** dx of the exact-erf GELU given dy and the forward's input x: dy·(Φ(x) + x·φ(x)). */
export function geluBackward(dy: Tensor, x: Tensor): Tensor {
  return new Tensor(nn().activationBackward('gelu', tensorArg(dy, 'geluBackward', 'dy'), tensorArg(x, 'geluBackward', 'x')));
}

/**
 * The SwiGLU gate of a feed-forward whose two input projections ran as one
 * GEMM with the row-concatenated weight [W1; W2]: a [..., 2H] holds
 * a1 = x·W1ᵀ in its first H channels and a2 = x·W2ᵀ in its last H.
 * Returns silu(a1) ⊙ a2 [..., H].
 */
export function swigluGate(a: Tensor): Tensor {
  return new Tensor(nn().swigluGate(tensorArg(a, 'swigluGate', 'a')));
}

/** The gradient of swigluGate: da [..., 2H] = [dh⊙a2⊙silu'(a1) | dh⊙silu(a1)] for dh [..., H]. */
export function swigluGateBackward(dh: Tensor, a: Tensor): Tensor {
  return new Tensor(nn().swigluGateBackward(tensorArg(dh, 'swigluGateBackward', 'dh'), tensorArg(a, 'swigluGateBackward', 'a')));
}

/**
 * Tokens of a [B, H·W, C] map to ws×ws windows [B·nh·nw, ws·ws, C], zero-padded
 * at the bottom/right to multiples of ws (SPEC §3: padded tokens take part as keys).
 */
export function windowPartition(x: Tensor, height: number, width: number, window: number): Tensor {
  return new Tensor(nn().windowPartition(x.handle('windowPartition'), height, width, window));
}

/** The inverse of windowPartition: back to [B, H·W, C], padding cropped. */
export function windowMerge(windows: Tensor, batch: number, height: number, width: number, window: number): Tensor {
  return new Tensor(nn().windowMerge(windows.handle('windowMerge'), batch, height, width, window));
}
