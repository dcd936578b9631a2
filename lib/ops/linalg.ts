/**
 * Linear algebra on the CPU GEMM kernels: linear layers (optionally with
 * weights packed once), the fused SwiGLU feed-forward, batched matmul and
 * the patch-embedding convolution. Inputs may be any strided view
 * (transposes, slices, permuted tokens) and are read in place; outputs are
 * new contiguous f32 tensors.
 */
import { MathPrecision, resolvePrecision } from '../autocast';
import { ArgumentError, DisposedError, DTypeError } from '../errors';
import { NativeTensorHandle, native } from '../native';
import { ownedTensors } from '../scope';
import { Tensor } from '../tensor';

/** [n, k, dtype, layout, kBlock, swiglu] as the addon takes it. */
type NativePackedDescription = [number, number, string, string, number, boolean];
type NativePacked = [NativeTensorHandle, ...NativePackedDescription];

/** The addon functions this module adds (native/binding/linalg_binding.cc). */
interface LinalgAddon {
  linear(x: NativeTensorHandle, w: NativeTensorHandle, bias: NativeTensorHandle | null,
    residual: NativeTensorHandle | null, precision: MathPrecision): NativeTensorHandle;
  linearPacked(x: NativeTensorHandle, packed: NativeTensorHandle, description: NativePackedDescription,
    bias: NativeTensorHandle | null, residual: NativeTensorHandle | null): NativeTensorHandle;
  swiglu(x: NativeTensorHandle, packed: NativeTensorHandle, description: NativePackedDescription,
    residual: NativeTensorHandle | null, outDtype: string): NativeTensorHandle;
  packLinear(w: NativeTensorHandle, dtype: string): NativePacked;
  packSwiGLU(w1: NativeTensorHandle, w2: NativeTensorHandle, dtype: string): NativePacked;
  matmul(a: NativeTensorHandle, b: NativeTensorHandle, transposeB: boolean, precision: MathPrecision): NativeTensorHandle;
  convPatch(x: NativeTensorHandle, w: NativeTensorHandle, bias: NativeTensorHandle | null, patch: number,
    precision: MathPrecision): NativeTensorHandle;
  gemmInfo(): GemmInfo;
}

function addon(): LinalgAddon {
  return native() as unknown as LinalgAddon;
}

/** Which GEMM kernels this process runs (they follow VLLAMA_CPU_ISA). */
export interface GemmInfo {
  /** 'scalar', 'avx2', 'avx512', or 'avx512bf16' (bf16 GEMMs use vdpbf16ps). */
  kernels: string;
  /** The packed-weight layout these kernels read (the ISA name). */
  layout: string;
  /** Micro-tile [rows, columns] of the f32 and bf16 kernels. */
  tile: [number, number];
  bf16Tile: [number, number];
  blocking: { mc: number; nc: number; kc: number };
}

export function gemmInfo(): GemmInfo {
  return addon().gemmInfo();
}

/**
 * Precision of packed weight panels (accumulation is always f32). 'f16':
 * fp16 weights, and activations rounded to fp16 as they are multiplied (the
 * f16 tensor cores on CUDA; on the CPU, which has no fp16 arithmetic, the
 * f32 kernels on fp16-rounded values, as the reference).
 */
export type PackedDType = 'f32' | 'bf16' | 'f16';

/** What the bytes of a packed weight mean; kept beside them (e.g. when saved). */
export interface PackedInfo {
  /** Output features (SwiGLU: the hidden size). */
  outFeatures: number;
  inFeatures: number;
  dtype: PackedDType;
  /** The kernels the panels were packed for (an ISA name: they are not portable). */
  layout: string;
  /** The K block the panels were cut into. */
  kBlock: number;
}

function requireTensor(value: unknown, op: string, what: string): Tensor {
  if (!(value instanceof Tensor)) throw new ArgumentError(`${op}: ${what} must be a Tensor, got ${describeValue(value)}`);
  return value;
}

function optionalTensor(value: unknown, op: string, what: string): NativeTensorHandle | null {
  if (value === undefined || value === null) return null;
  return requireTensor(value, op, what).handle(op);
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return typeof v;
}

function checkOptions<T extends object>(options: unknown, op: string, keys: readonly string[]): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ArgumentError(`${op}: options must be an object, got ${describeValue(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (!keys.includes(k)) throw new ArgumentError(`${op}: unknown option '${k}'; expected ${keys.join(', ')}`);
  }
  return options as T;
}

function packedDType(value: unknown, op: string): PackedDType {
  if (value === undefined) return 'f32';
  if (value !== 'f32' && value !== 'bf16' && value !== 'f16') {
    throw new DTypeError(`${op}: dtype must be 'f32', 'bf16' or 'f16' (the precision of the packed panels), got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Weights packed once into the GEMM kernels' panel layout. The bytes live
 * in a u8 tensor (`.tensor`), so memory accounting, dispose(), `using` and
 * tidy() work as for any tensor; the panels are only valid for the kernels
 * that packed them (`layout`: the CPU ISA name, or 'cuda' for a weight packed
 * on a CUDA device), and using them under another ISA or on another device
 * is an error.
 */
abstract class PackedWeight {
  /** The packed panels (u8). Disposing it disposes this weight. */
  readonly tensor: Tensor;
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly dtype: PackedDType;
  readonly layout: string;
  readonly kBlock: number;
  protected abstract readonly kind: string;

  protected constructor(tensor: Tensor, info: PackedInfo) {
    this.tensor = tensor;
    this.outFeatures = info.outFeatures;
    this.inFeatures = info.inFeatures;
    this.dtype = info.dtype;
    this.layout = info.layout;
    this.kBlock = info.kBlock;
  }

  /** [outFeatures, inFeatures], the shape of the weight it was packed from. */
  get shape(): readonly [number, number] { return [this.outFeatures, this.inFeatures]; }
  get device(): string { return this.tensor.device; }
  get isDisposed(): boolean { return this.tensor.isDisposed; }
  get info(): PackedInfo {
    return { outFeatures: this.outFeatures, inFeatures: this.inFeatures, dtype: this.dtype, layout: this.layout, kBlock: this.kBlock };
  }

  describe(): string {
    return `${this.kind}(${this.dtype}[${this.outFeatures},${this.inFeatures}] packed for ${this.layout} on ${this.tensor.device})`;
  }
  toString(): string { return `${this.describe()}${this.isDisposed ? ', disposed' : ''}`; }

  dispose(): void { this.tensor.dispose(); }
  [Symbol.dispose](): void { this.dispose(); }
  [ownedTensors](): Tensor[] { return [this.tensor]; }

  /** @internal */
  nativeArgs(op: string, swiglu: boolean): [NativeTensorHandle, NativePackedDescription] {
    if (this.tensor.isDisposed) throw new DisposedError(`${op}: the ${this.kind} ${this.describe()} was disposed and cannot be used`);
    return [this.tensor.handle(op), [this.outFeatures, this.inFeatures, this.dtype, this.layout, this.kBlock, swiglu]];
  }
}

function checkInfo(info: unknown, op: string): PackedInfo {
  const i = info as PackedInfo;
  if (i === null || typeof i !== 'object') throw new ArgumentError(`${op}: info must be a PackedInfo object`);
  for (const k of ['outFeatures', 'inFeatures', 'kBlock'] as const) {
    if (!Number.isSafeInteger(i[k]) || i[k] < 0) throw new ArgumentError(`${op}: info.${k} must be a non-negative integer, got ${String(i[k])}`);
  }
  if (typeof i.layout !== 'string') throw new ArgumentError(`${op}: info.layout must be a string`);
  return { outFeatures: i.outFeatures, inFeatures: i.inFeatures, dtype: packedDType(i.dtype, op), layout: i.layout, kBlock: i.kBlock };
}

/** A Linear weight [out, in] packed by packLinear(). */
export class PackedLinear extends PackedWeight {
  protected readonly kind = 'PackedLinear';

  /** @internal Made by packLinear() and fromTensor(). */
  constructor(tensor: Tensor, info: PackedInfo) { super(tensor, info); }

  /**
   * A packed weight from its bytes and info (e.g. both saved earlier). The
   * tensor is owned from now on. Whether the bytes fit these kernels is
   * checked at use.
   */
  static fromTensor(tensor: Tensor, info: PackedInfo): PackedLinear {
    return new PackedLinear(requireTensor(tensor, 'PackedLinear.fromTensor', 'tensor'), checkInfo(info, 'PackedLinear.fromTensor'));
  }
}

/** W1 and W2 of a SwiGLU feed-forward ([hidden, in] each) packed together by packSwiGLU(). */
export class PackedSwiGLU extends PackedWeight {
  protected readonly kind = 'PackedSwiGLU';

  /** @internal */
  constructor(tensor: Tensor, info: PackedInfo) { super(tensor, info); }

  get hidden(): number { return this.outFeatures; }

  static fromTensor(tensor: Tensor, info: PackedInfo): PackedSwiGLU {
    return new PackedSwiGLU(requireTensor(tensor, 'PackedSwiGLU.fromTensor', 'tensor'), checkInfo(info, 'PackedSwiGLU.fromTensor'));
  }
}

function fromNative(r: NativePacked): [Tensor, PackedInfo] {
  const [h, n, k, dtype, layout, kBlock] = r;
  return [new Tensor(h), { outFeatures: n, inFeatures: k, dtype: dtype as PackedDType, layout, kBlock }];
}

/**
 * Packs a Linear weight [out, in] (f32 or bf16, any strides) once into the
 * GEMM panel layout. `dtype: 'bf16'` stores bf16 panels: half the memory
 * and, with AVX512_BF16, about twice the speed, at bf16 input precision.
 */
export function packLinear(weight: Tensor, options: { dtype?: PackedDType } = {}): PackedLinear {
  const op = 'packLinear';
  const o = checkOptions<{ dtype?: PackedDType }>(options, op, ['dtype']);
  const w = requireTensor(weight, op, 'weight');
  const [t, info] = fromNative(addon().packLinear(w.handle(op), packedDType(o.dtype, op)));
  return new PackedLinear(t, info);
}

/**
 * Packs the two input projections of a SwiGLU feed-forward, W1 (gate) and W2
 * (up), each [hidden, in], into interleaved panels: swiglu() then computes
 * silu(x W1^T) * (x W2^T) in one GEMM pass.
 */
export function packSwiGLU(w1: Tensor, w2: Tensor, options: { dtype?: PackedDType } = {}): PackedSwiGLU {
  const op = 'packSwiGLU';
  const o = checkOptions<{ dtype?: PackedDType }>(options, op, ['dtype']);
  const a = requireTensor(w1, op, 'w1');
  const b = requireTensor(w2, op, 'w2');
  const [t, info] = fromNative(addon().packSwiGLU(a.handle(op), b.handle(op), packedDType(o.dtype, op)));
  return new PackedSwiGLU(t, info);
}

export interface LinearOptions {
  /** [out] added to every row. */
  bias?: Tensor | null;
  /** Added last, same shape as the output (the residual stream). */
  residual?: Tensor | null;
  /**
   * Arithmetic of an unpacked weight's GEMM (default: the autocast scope's,
   * else 'f32'); a packed weight fixed its precision when it was packed.
   */
  precision?: MathPrecision;
}

/**
 * x W^T (+ bias) (+ residual): x [..., in] f32, weight [out, in] f32 or a
 * PackedLinear -> [..., out]. With a bf16 PackedLinear on the CPU, x may be
 * bf16 (what swiglu's dtype 'bf16' gives): the same product, since the GEMM
 * rounds x to bf16 anyway. Bias and residual are added as the GEMM
 * stores its tiles (no extra pass).
 */
export function linear(x: Tensor, weight: Tensor | PackedLinear, options: LinearOptions = {}): Tensor {
  const op = 'linear';
  const o = checkOptions<LinearOptions>(options, op, ['bias', 'residual', 'precision']);
  const precision = resolvePrecision(o.precision, op);
  const xh = requireTensor(x, op, 'x').handle(op);
  const bias = optionalTensor(o.bias, op, 'bias');
  const residual = optionalTensor(o.residual, op, 'residual');
  if (weight instanceof PackedLinear) {
    const [h, d] = weight.nativeArgs(op, false);
    return new Tensor(addon().linearPacked(xh, h, d, bias, residual));
  }
  if (weight instanceof PackedSwiGLU) {
    throw new ArgumentError('linear: this weight was packed with packSwiGLU; use swiglu(x, packed)');
  }
  return new Tensor(addon().linear(xh, requireTensor(weight, op, 'weight').handle(op), bias, residual, precision));
}

export interface SwiGLUOptions {
  residual?: Tensor | null;
  /**
   * 'bf16' (CPU, bf16 packed weights, no residual): the result rounded to
   * bf16 as it is stored, for a bf16 packed down projection, which rounds
   * its input to bf16 anyway: the same numbers, half the memory traffic.
   */
  dtype?: 'f32' | 'bf16';
}

/**
 * The SwiGLU feed-forward's first half in one GEMM pass:
 * silu(x W1^T) * (x W2^T) -> [..., hidden], silu(a) = a / (1 + exp(-a)).
 * Follow it with linear(h, down) for the down projection.
 */
export function swiglu(x: Tensor, packed: PackedSwiGLU, options: SwiGLUOptions = {}): Tensor {
  const op = 'swiglu';
  const o = checkOptions<SwiGLUOptions>(options, op, ['residual', 'dtype']);
  const dtype = o.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'bf16') throw new DTypeError(`swiglu: dtype must be 'f32' or 'bf16', got ${describeValue(dtype)}`);
  const xh = requireTensor(x, op, 'x').handle(op);
  if (!(packed instanceof PackedSwiGLU)) {
    throw new ArgumentError(`swiglu: expected a PackedSwiGLU from packSwiGLU(w1, w2), got ${describeValue(packed)}`);
  }
  const [h, d] = packed.nativeArgs(op, true);
  return new Tensor(addon().swiglu(xh, h, d, optionalTensor(o.residual, op, 'residual'), dtype));
}

/**
 * Batched matrix product: a [..., M, K] . b [..., K, N] -> [..., M, N], batch
 * dims broadcast like numpy. With transposeB, b is [..., N, K] (e.g. keys in
 * attention scores). Transposed or strided views are read without copies.
 */
export function matmul(a: Tensor, b: Tensor, options: { transposeB?: boolean; precision?: MathPrecision } = {}): Tensor {
  const op = 'matmul';
  const o = checkOptions<{ transposeB?: boolean; precision?: MathPrecision }>(options, op, ['transposeB', 'precision']);
  if (o.transposeB !== undefined && typeof o.transposeB !== 'boolean') {
    throw new ArgumentError(`matmul: transposeB must be a boolean, got ${describeValue(o.transposeB)}`);
  }
  const precision = resolvePrecision(o.precision, op);
  return new Tensor(addon().matmul(requireTensor(a, op, 'a').handle(op), requireTensor(b, op, 'b').handle(op), o.transposeB ?? false, precision));
}

/**
 * Patch embedding: Conv2d with stride = kernel = patch on x [B, C, H, W]
 * (any strides) with weight [O, C, patch, patch] and bias [O] (or null) ->
 * tokens [B, (H/patch)*(W/patch), O], the grid in row-major order. H and W
 * must be multiples of the patch. Also the sr x sr reduction of pyramid GSA.
 */
export function convPatch(x: Tensor, weight: Tensor, bias: Tensor | null | undefined,
  options: { patch: number; precision?: MathPrecision }): Tensor {
  const op = 'convPatch';
  if (options === undefined) throw new ArgumentError('convPatch: options { patch } are required');
  const o = checkOptions<{ patch: number; precision?: MathPrecision }>(options, op, ['patch', 'precision']);
  const precision = resolvePrecision(o.precision, op);
  if (!Number.isSafeInteger(o.patch) || o.patch < 1) {
    throw new ArgumentError(`convPatch: patch must be a positive integer, got ${String(o.patch)}`);
  }
  return new Tensor(addon().convPatch(requireTensor(x, op, 'x').handle(op), requireTensor(weight, op, 'weight').handle(op),
    optionalTensor(bias, op, 'bias'), o.patch, precision));
}
