/** Normalization, softmax, activations and window layouts (native/ops/nn.h). */
import { ArgumentError } from '../errors';
import { NativeTensorHandle, native } from '../native';
import { Tensor } from '../tensor';

interface NnNative {
  layerNorm(x: NativeTensorHandle, w: NativeTensorHandle | null, b: NativeTensorHandle | null, eps: number, stats: boolean): NativeTensorHandle[];
  addLayerNorm(x: NativeTensorHandle, r: NativeTensorHandle, w: NativeTensorHandle | null, b: NativeTensorHandle | null, eps: number, stats: boolean): NativeTensorHandle[];
  softmax(x: NativeTensorHandle, lse: boolean): NativeTensorHandle[];
  activation(kind: string, x: NativeTensorHandle): NativeTensorHandle;
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
