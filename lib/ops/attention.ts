/**
 * Fused AS2DRoPE attention (SPEC §1-§3): softmax(rope(q)·rope(k)ᵀ·scale)·v,
 * computed tile by tile with an online softmax (the N×M scores are never
 * stored), plus the views that feed it straight from packed projections.
 */
import { MathPrecision, resolvePrecision } from '../autocast';
import { tensor } from '../creation';
import { ArgumentError, ShapeError } from '../errors';
import { NativeTensorHandle, native } from '../native';
import { Tensor } from '../tensor';

/**
 * Token positions as a grid rule, evaluated in the kernel for token i:
 * idx = i + indexOffset, x = bias + pymod(idx, cols)·step, y = bias + floordiv(idx, cols)·step.
 * Floor semantics put a leading class token (indexOffset −1) at x = (cols−1)·step, y = −step.
 * - plain ViT with class token: `{ cols: gw, step: baseSize / imageHeight (or 1), indexOffset: -1 }`
 * - LSA windows (batch = B·windows): `{ cols: ws }`
 * - GSA keys: `{ cols: W (the full-resolution width), step: sr, bias: 1 - 1/sr }`
 */
export interface GridPositions {
  cols: number;
  step?: number;
  bias?: number;
  indexOffset?: number;
}

export type PositionValues = Float32Array | readonly number[] | Tensor;

/** Explicit (x, y) per token, or a grid rule. */
export type PositionSpec = { x: PositionValues; y: PositionValues } | { grid: GridPositions };

export interface AttentionOptions {
  /** Query positions (needed unless rope is false). */
  qPos?: PositionSpec;
  /** Key positions; default: the query positions (needs as many keys as queries). */
  kPos?: PositionSpec;
  /** Rotate q and k (default true). */
  rope?: boolean;
  /** Score scale; default 1/sqrt(D). */
  scale?: number;
  /** Also return the per-row log-sum-exp [B, heads, N] of the scaled scores (for backward). */
  returnLse?: boolean;
  /**
   * 'bf16': q·kᵀ and p·v on bf16-rounded operands with f32 accumulation and
   * softmax (one tensor-core pass on CUDA; on a CPU with AVX512_BF16 the
   * vdpbf16ps kernel when no lse is returned, i.e. for inference: a forward
   * recorded for backward keeps the f32 kernel, whose P its backward
   * recomputes). Default: the autocast scope's, else 'f32'.
   */
  precision?: MathPrecision;
}

type NativePositions =
  | { x: NativeTensorHandle; y: NativeTensorHandle }
  | { cols: number; step: number; bias: number; indexOffset: number };

export interface AttentionBackwardOptions {
  qPos?: PositionSpec; kPos?: PositionSpec; rope?: boolean; scale?: number;   // the same meaning as for attention()
  precision?: MathPrecision;  // as for attention(); pass the forward's
  /** 'qkv': write dq|dk|dv into one new tensor [B, N, 3·h·D] ordered [q|k|v][head][d] (needs M == N);
   *  'kv': write dk|dv into one new tensor [B, M, 2·h·D] ordered [k|v][head][d]. */
  packed?: 'qkv' | 'kv';
}

/** The native functions this module uses (see native/binding/attention_binding.cc). */
interface AttentionAddon {
  attention(q: NativeTensorHandle, k: NativeTensorHandle, v: NativeTensorHandle, qPos: NativePositions | undefined,
    kPos: NativePositions | undefined, rope: boolean, scale: number | undefined, returnLse: boolean,
    precision: MathPrecision): NativeTensorHandle[];
  attentionBackward(dOut: NativeTensorHandle, q: NativeTensorHandle, k: NativeTensorHandle, v: NativeTensorHandle,
    out: NativeTensorHandle, lse: NativeTensorHandle, qPos: NativePositions | undefined, kPos: NativePositions | undefined,
    rope: boolean, scale: number | undefined, packed: 'qkv' | 'kv' | undefined, precision: MathPrecision): NativeTensorHandle[];
  asStrided(t: NativeTensorHandle, shape: number[], strides: number[], offset: number): NativeTensorHandle;
}

function addon(): AttentionAddon {
  return native() as unknown as AttentionAddon;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? (v as object).constructor?.name ?? 'an object' : `${typeof v} ${String(v)}`;
}

/** Resolves a position spec; tensors it had to make from arrays go to `temps`. */
function positions(spec: PositionSpec | undefined, name: string, device: string, temps: Tensor[], fn = 'attention'): NativePositions | undefined {
  if (spec === undefined) return undefined;
  if (spec === null || typeof spec !== 'object') {
    throw new ArgumentError(`${fn}: ${name} must be {x, y} or {grid: {cols, step?, bias?, indexOffset?}}, got ${describeValue(spec)}`);
  }
  if ('grid' in spec) {
    const g = spec.grid;
    if (g === null || typeof g !== 'object') throw new ArgumentError(`${fn}: ${name}.grid must be an object {cols, step?, bias?, indexOffset?}, got ${describeValue(g)}`);
    const { cols, step = 1, bias = 0, indexOffset = 0 } = g;
    if (typeof cols !== 'number' || !Number.isInteger(cols) || cols < 1) {
      throw new ArgumentError(`${fn}: ${name}.grid.cols must be a positive integer, got ${describeValue(cols)}`);
    }
    for (const [key, value] of Object.entries({ step, bias })) {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw new ArgumentError(`${fn}: ${name}.grid.${key} must be a finite number, got ${describeValue(value)}`);
      }
    }
    if (typeof indexOffset !== 'number' || !Number.isSafeInteger(indexOffset)) {
      throw new ArgumentError(`${fn}: ${name}.grid.indexOffset must be an integer, got ${describeValue(indexOffset)}`);
    }
    return { cols, step, bias, indexOffset };
  }
  if (!('x' in spec) || !('y' in spec)) {
    throw new ArgumentError(`${fn}: ${name} must have both x and y, or grid`);
  }
  const handle = (values: PositionValues, axis: string): NativeTensorHandle => {
    if (values instanceof Tensor) return values.handle(fn);
    if (!(values instanceof Float32Array) && !Array.isArray(values)) {
      throw new ArgumentError(`${fn}: ${name}.${axis} must be a Float32Array, an array of numbers or a Tensor, got ${describeValue(values)}`);
    }
    const t = tensor(values instanceof Float32Array ? values : Float32Array.from(values as number[]), undefined, { dtype: 'f32', device });
    temps.push(t);
    return t.handle(fn);
  };
  return { x: handle(spec.x, 'x'), y: handle(spec.y, 'y') };
}

/** Checks the options attention() and attentionBackward() share. */
function checkCommonOptions(options: AttentionOptions | AttentionBackwardOptions, fn: string):
  { rope: boolean; scale: number | undefined; precision: MathPrecision } {
  if (options === null || typeof options !== 'object') throw new ArgumentError(`${fn}: options must be an object, got ${describeValue(options)}`);
  const { rope = true, scale } = options;
  if (typeof rope !== 'boolean') throw new ArgumentError(`${fn}: rope must be a boolean, got ${describeValue(rope)}`);
  if (scale !== undefined && (typeof scale !== 'number' || !Number.isFinite(scale))) {
    throw new ArgumentError(`${fn}: scale must be a finite number, got ${describeValue(scale)}`);
  }
  return { rope, scale, precision: resolvePrecision(options.precision, fn) };
}

/**
 * Fused attention with 2D rotary positions. q [B, N, heads, D], k and v
 * [B, M, heads, D], f32, D a multiple of 4 from 16 to 256; any strides with a
 * contiguous last dim are read in place (see splitQKV / splitKV).
 * Returns out [B, N, heads·D] (heads concatenated), and with returnLse also
 * lse [B, heads, N].
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions & { returnLse?: false }): Tensor;
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions & { returnLse: true }): { out: Tensor; lse: Tensor };
export function attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Tensor | { out: Tensor; lse: Tensor };
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor | { out: Tensor; lse: Tensor } {
  for (const [name, t] of Object.entries({ q, k, v })) {
    if (!(t instanceof Tensor)) throw new ArgumentError(`attention: ${name} must be a Tensor, got ${describeValue(t)}`);
  }
  const { rope, scale, precision } = checkCommonOptions(options, 'attention');
  const { returnLse = false } = options;
  if (typeof returnLse !== 'boolean') throw new ArgumentError(`attention: returnLse must be a boolean, got ${describeValue(returnLse)}`);
  const temps: Tensor[] = [];
  try {
    const qPos = rope ? positions(options.qPos, 'qPos', q.device, temps) : undefined;
    const kPos = rope ? positions(options.kPos, 'kPos', q.device, temps) : undefined;
    const handles = addon().attention(q.handle('attention'), k.handle('attention'), v.handle('attention'), qPos, kPos, rope, scale, returnLse, precision);
    const out = new Tensor(handles[0]);
    return returnLse ? { out, lse: new Tensor(handles[1]) } : out;
  } finally {
    for (const t of temps) t.dispose();
  }
}

/**
 * Gradients of attention() with respect to q, k (before their rotation) and
 * v, given the incoming gradient dOut [B, N, heads·D] of its output, the
 * forward's inputs q [B, N, heads, D], k and v [B, M, heads, D] (any strides
 * with a contiguous last dim, as passed to the forward), its output out
 * [B, N, heads·D] and its log-sum-exp lse [B, heads, N] (returnLse: true).
 * The options must be those the forward ran with. The softmax is recomputed
 * tile by tile from lse; no N×M matrix is stored.
 *
 * Returns dq [B, N, heads, D], dk and dv [B, M, heads, D]: new contiguous
 * tensors, or with `packed` views into `packed` for the gradients it holds
 * (the rest new contiguous tensors).
 */
export function attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
  options: AttentionBackwardOptions = {}): { dq: Tensor; dk: Tensor; dv: Tensor; packed?: Tensor } {
  const fn = 'attentionBackward';
  for (const [name, t] of Object.entries({ dOut, q, k, v, out, lse })) {
    if (!(t instanceof Tensor)) throw new ArgumentError(`${fn}: ${name} must be a Tensor, got ${describeValue(t)}`);
  }
  const { rope, scale, precision } = checkCommonOptions(options, fn);
  const { packed } = options;
  if (packed !== undefined && packed !== 'qkv' && packed !== 'kv') {
    throw new ArgumentError(`${fn}: packed must be 'qkv' or 'kv' (or left out), got ${describeValue(packed)}`);
  }
  const temps: Tensor[] = [];
  try {
    const qPos = rope ? positions(options.qPos, 'qPos', q.device, temps, fn) : undefined;
    const kPos = rope ? positions(options.kPos, 'kPos', q.device, temps, fn) : undefined;
    const handles = addon().attentionBackward(dOut.handle(fn), q.handle(fn), k.handle(fn), v.handle(fn), out.handle(fn),
      lse.handle(fn), qPos, kPos, rope, scale, packed, precision);
    const [dq, dk, dv] = handles.slice(0, 3).map((h) => new Tensor(h));
    return handles.length > 3 ? { dq, dk, dv, packed: new Tensor(handles[3]) } : { dq, dk, dv };
  } finally {
    for (const t of temps) t.dispose();
  }
}

function checkHeads(heads: unknown, fn: string): number {
  if (typeof heads !== 'number' || !Number.isInteger(heads) || heads < 1) {
    throw new ArgumentError(`${fn}: heads must be a positive integer, got ${describeValue(heads)}`);
  }
  return heads;
}

/** Views [B, T, heads, D] of the `parts` equal slices of a packed [B, T, parts·heads·D] projection. */
function splitPacked(packed: Tensor, heads: number, parts: number, fn: string, names: string): Tensor[] {
  if (!(packed instanceof Tensor)) throw new ArgumentError(`${fn}: expected a Tensor, got ${describeValue(packed)}`);
  checkHeads(heads, fn);
  if (packed.ndim !== 3) {
    throw new ShapeError(`${fn}: expected a 3-D projection [B, T, ${parts}·C] (${names}), got ${packed.describe()}`);
  }
  const [B, T, width] = packed.shape;
  if (width % (parts * heads) !== 0) {
    throw new ShapeError(`${fn}: the last dim ${width} of ${packed.describe()} is not ${parts}·heads·D for heads = ${heads}`);
  }
  const D = width / (parts * heads);
  const C = heads * D;
  // Views need a contiguous channel dim; anything else is copied once.
  const base = packed.strides[2] === 1 || width === 1 ? packed : packed.contiguous();
  try {
    const [s0, s1] = base.strides;
    const n = addon();
    return Array.from({ length: parts }, (_, i) =>
      new Tensor(n.asStrided(base.handle(fn), [B, T, heads, D], [s0, s1, D, 1], base.offset + i * C)));
  } finally {
    if (base !== packed) base.dispose();
  }
}

/**
 * q, k, v views [B, N, heads, D] of a qkv projection [B, N, 3C] whose
 * channels are ordered [q|k|v][head][d] (SPEC §2). No data is copied.
 */
export function splitQKV(qkv: Tensor, heads: number): { q: Tensor; k: Tensor; v: Tensor } {
  const [q, k, v] = splitPacked(qkv, heads, 3, 'splitQKV', 'q|k|v');
  return { q, k, v };
}

/** k, v views [B, M, heads, D] of a GSA kv projection [B, M, 2C] ordered [k|v][head][d]. */
export function splitKV(kv: Tensor, heads: number): { k: Tensor; v: Tensor } {
  const [k, v] = splitPacked(kv, heads, 2, 'splitKV', 'k|v');
  return { k, v };
}
