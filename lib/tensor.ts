import './polyfill';
import { DataTypeMap, DType, DTYPES, TypedData, checkDType, dtypeSize, isFloatDType, readDType } from './dtype';
import { ArgumentError, DisposedError, DTypeError, ShapeError } from './errors';
import { NativeTensorHandle, native } from './native';
import { keep, track } from './scope';
import type { GradEdge } from './autograd/node';

/**
 * @internal What the autograd module (lib/autograd) plugs into Tensor: the
 * recording versions of the tensor methods, used when grad mode is on and an
 * input requires grad. Kept as hooks so tensor.ts does not import autograd.
 */
export interface GradHooks {
  enabled(): boolean;
  binary(op: 'add' | 'sub' | 'mul' | 'div', a: Tensor, b: Tensor | number): Tensor;
  sum(t: Tensor, dims: number[], keepdim: boolean): Tensor;
  reshape(t: Tensor, shape: number[], view: boolean): Tensor;
  permute(t: Tensor, dims: number[]): Tensor;
  narrow(t: Tensor, dim: number, start: number, length: number): Tensor;
  expand(t: Tensor, shape: number[]): Tensor;
  contiguous(t: Tensor): Tensor;
  concat(tensors: readonly Tensor[], dim: number): Tensor;
  backward(t: Tensor, grad: Tensor | undefined, options: BackwardOptions): void;
}

export interface BackwardOptions {
  /** Keep the graph (and its saved tensors) for another backward pass. */
  retainGraph?: boolean;
}

let gradHooks: GradHooks | null = null;
/** @internal */
export function setGradHooks(h: GradHooks): void { gradHooks = h; }
/** @internal The hooks, when an op on `inputs` is to be recorded. */
export function recordingHooks(inputs: readonly unknown[]): GradHooks | null {
  if (!gradHooks || !gradHooks.enabled()) return null;
  return inputs.some((t) => t instanceof Tensor && t.requiresGrad) ? gradHooks : null;
}

/** 'cpu', 'cuda', 'cuda:N' (and 'cpu:N' when VLLAMA_CPU_DEVICES is set). */
export type Device = string;

const arrayCtor = {
  f32: Float32Array,
  i32: Int32Array,
  i64: BigInt64Array,
  u8: Uint8Array,
} as const;

function viewAs(buffer: ArrayBuffer, dtype: DType): TypedData {
  return new arrayCtor[readDType(dtype) as keyof typeof arrayCtor](buffer);
}

function shapeArgs(args: (number | readonly number[])[]): number[] {
  return args.length === 1 && Array.isArray(args[0]) ? [...(args[0] as number[])] : (args as number[]);
}

/**
 * An n-dimensional array in native memory on one device. Operations are
 * queued on the device and return at once; reading values back (`data()`)
 * waits for them. Release memory with dispose(), `using`, or tidy().
 */
export class Tensor {
  #handle: NativeTensorHandle | null;
  readonly dtype: DType;
  readonly device: Device;
  readonly shape: readonly number[];
  /** Element strides; views of one storage differ only here and in offset. */
  readonly strides: readonly number[];
  readonly offset: number;
  readonly isContiguous: boolean;
  #requiresGrad = false;
  /** @internal Where this tensor's gradient flows (set on outputs of recorded ops). */
  gradEdge: GradEdge | null = null;
  /**
   * The accumulated gradient of a leaf that requires grad (after backward());
   * owned by this tensor and disposed with it.
   */
  grad: Tensor | null = null;

  /** @internal Tensors are made by the factory functions and ops. */
  constructor(handle: NativeTensorHandle) {
    this.#handle = handle;
    const [dtype, device, shape, strides, offset, contiguous] = handle.meta();
    this.dtype = dtype as DType;
    this.device = device;
    this.shape = Object.freeze(shape);
    this.strides = Object.freeze(strides);
    this.offset = offset;
    this.isContiguous = contiguous;
    track(this);
  }

  /** @internal The native handle; throws DisposedError after dispose(). */
  handle(op: string): NativeTensorHandle {
    if (this.#handle === null) {
      throw new DisposedError(`${op}: ${this.describe()} was disposed and cannot be used`);
    }
    return this.#handle;
  }

  get ndim(): number { return this.shape.length; }
  get size(): number { return this.shape.reduce((a, b) => a * b, 1); }
  get isDisposed(): boolean { return this.#handle === null; }

  describe(): string { return `${this.dtype}[${this.shape.join(',')}] on ${this.device}`; }
  toString(): string { return `Tensor(${this.describe()}${this.isDisposed ? ', disposed' : ''})`; }

  /**
   * Whether gradients flow to this tensor: set it on leaves (parameters,
   * inputs); outputs of recorded ops require grad when an input does.
   */
  get requiresGrad(): boolean { return this.#requiresGrad || this.gradEdge !== null; }
  set requiresGrad(on: boolean) {
    if (typeof on !== 'boolean') throw new ArgumentError(`requiresGrad must be a boolean, got ${typeof on}`);
    if (this.gradEdge !== null) {
      throw new ArgumentError(`requiresGrad: ${this.describe()} is the output of a recorded op; only leaves can be set (use detach())`);
    }
    if (on && !isFloatDType(this.dtype)) throw new DTypeError(`requiresGrad: only float tensors can require grad, got ${this.describe()}`);
    this.#requiresGrad = on;
  }

  /** Whether this tensor was made by the user (or is a parameter) rather than by a recorded op. */
  get isLeaf(): boolean { return this.gradEdge === null; }

  /**
   * Backpropagates from this tensor: a scalar by default, or any shape with
   * an explicit gradient of the same shape. Leaves that require grad get
   * (accumulate) `.grad`; the graph's saved tensors are released afterwards.
   */
  backward(grad?: Tensor, options: BackwardOptions = {}): void {
    if (!gradHooks) throw new ArgumentError('backward: the autograd module is not loaded (import visionllama, not its tensor module)');
    gradHooks.backward(this, grad, options);
  }

  /** A view of the same storage that is cut from the graph (requires no grad). */
  detach(): Tensor {
    return new Tensor(native().asStrided(this.handle('detach'), [...this.shape], [...this.strides], this.offset));
  }

  /** @internal A new handle on the same storage that no tidy() scope owns (autograd keeps these). */
  alias(): Tensor {
    return keep(this.detach());
  }

  private records(other?: Tensor | number): boolean {
    return gradHooks !== null && gradHooks.enabled() &&
      (this.requiresGrad || (other instanceof Tensor && other.requiresGrad));
  }

  /** Releases the native memory now (when no other view holds it), and the gradient. Idempotent. */
  dispose(): void {
    if (this.#handle !== null) {
      this.#handle.dispose();
      this.#handle = null;
    }
    this.gradEdge = null;
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }
  [Symbol.dispose](): void { this.dispose(); }

  /** Whether both tensors are views of the same native storage. */
  sharesStorage(other: Tensor): boolean {
    return this.handle('sharesStorage').sharesStorage(other.handle('sharesStorage'));
  }

  /** A view with a new shape (one dim may be -1); copies only when no view can express it. */
  reshape(...shape: (number | readonly number[])[]): Tensor {
    const dims = shapeArgs(shape);
    if (this.records()) return gradHooks!.reshape(this, dims, false);
    const n = native();
    try {
      return new Tensor(n.reshape(this.handle('reshape'), dims));
    } catch (err) {
      if (!(err instanceof Error) || !/call contiguous\(\) first/.test(err.message)) throw err;
      const c = n.contiguous(this.handle('reshape'));
      try { return new Tensor(n.reshape(c, dims)); } finally { c.dispose(); }
    }
  }

  /** Like reshape, but never copies: throws ShapeError when the layout does not allow a view. */
  view(...shape: (number | readonly number[])[]): Tensor {
    if (this.records()) return gradHooks!.reshape(this, shapeArgs(shape), true);
    return new Tensor(native().reshape(this.handle('view'), shapeArgs(shape)));
  }

  /** A view with dimensions reordered. */
  permute(...dims: (number | readonly number[])[]): Tensor {
    if (this.records()) return gradHooks!.permute(this, shapeArgs(dims));
    return new Tensor(native().permute(this.handle('permute'), shapeArgs(dims)));
  }

  /** A view with two dimensions swapped (the last two by default). */
  transpose(dim0 = -2, dim1 = -1): Tensor {
    const n = this.ndim;
    const a = dim0 < 0 ? dim0 + n : dim0;
    const b = dim1 < 0 ? dim1 + n : dim1;
    if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b < 0 || a >= n || b >= n) {
      throw new ArgumentError(`transpose: dimensions ${dim0} and ${dim1} are out of range for ${this.describe()}`);
    }
    const order = [...Array(n).keys()];
    order[a] = b;
    order[b] = a;
    if (this.records()) return gradHooks!.permute(this, order);
    return new Tensor(native().permute(this.handle('transpose'), order));
  }

  /**
   * A view repeating size-1 dimensions to `shape` (stride 0, no copy); leading
   * dimensions may be added. -1 keeps a dimension.
   */
  expand(...shape: (number | readonly number[])[]): Tensor {
    const dims = shapeArgs(shape);
    if (this.records()) return gradHooks!.expand(this, dims);
    const lead = dims.length - this.ndim;
    if (lead < 0) throw new ShapeError(`expand: ${dims.length} dimensions are fewer than those of ${this.describe()}`);
    const strides = dims.map((d, i) => {
      const own = i - lead;
      const size = own >= 0 ? this.shape[own] : 1;
      if (d === -1 && own >= 0) { dims[i] = size; return this.strides[own]; }
      if (!Number.isInteger(d) || d < 0) throw new ShapeError(`expand: bad size ${d} in [${dims}]`);
      if (own >= 0 && size === d) return this.strides[own];
      if (size !== 1) throw new ShapeError(`expand: dimension ${own} of ${this.describe()} has size ${size}, not 1, so it cannot become ${d}`);
      return 0;
    });
    return new Tensor(native().asStrided(this.handle('expand'), dims, strides, this.offset));
  }

  /** A view of `length` entries of dimension `dim` starting at `start`. */
  narrow(dim: number, start: number, length: number): Tensor {
    const d = dim < 0 ? dim + this.ndim : dim;
    if (!Number.isInteger(d) || d < 0 || d >= this.ndim) {
      throw new ArgumentError(`narrow: dimension ${dim} is out of range for ${this.describe()}`);
    }
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > this.shape[d]) {
      throw new ShapeError(`narrow: [${start}, ${start + length}) is not inside dimension ${d} of ${this.describe()}`);
    }
    if (this.records()) return gradHooks!.narrow(this, d, start, length);
    const shape = [...this.shape];
    shape[d] = length;
    return new Tensor(native().asStrided(this.handle('narrow'), shape, [...this.strides], this.offset + start * this.strides[d]));
  }

  /** A contiguous copy with storage of its own (not recorded by autograd). */
  clone(): Tensor {
    return new Tensor(native().copy(this.handle('clone'), this.dtype));
  }

  /** A contiguous tensor: a new handle on the same storage when already contiguous, else a copy. */
  contiguous(): Tensor {
    if (this.records()) return gradHooks!.contiguous(this);
    return new Tensor(native().contiguous(this.handle('contiguous')));
  }

  /**
   * Overwrites this tensor's values with `src`'s (same shape, dtype and
   * device), in place: views and holders of this tensor (an optimizer, a
   * packed-weight cache keyed on it) see the new values. Not recorded by
   * autograd. Returns this tensor.
   */
  assign(src: Tensor): this {
    if (!(src instanceof Tensor)) throw new ArgumentError('assign: expected a Tensor');
    native().assign(this.handle('assign'), src.handle('assign'));
    return this;
  }

  /**
   * Converts dtype and/or moves device; always explicit, never implicit.
   * `to('bf16')`, `to('cuda')`, `to({ dtype: 'f16', device: 'cuda:1' })`.
   */
  to(target: DType | Device | { dtype?: DType; device?: Device }): Tensor {
    let spec: { dtype?: DType; device?: Device };
    if (typeof target === 'string') {
      if ((DTYPES as readonly string[]).includes(target)) spec = { dtype: target as DType };
      else if (/^(cpu|cuda)(:\d+)?$/.test(target)) spec = { device: target };
      else throw new DTypeError(`to: '${target}' is neither a dtype (${DTYPES.join(', ')}) nor a device ('cpu', 'cuda', 'cuda:N')`);
    } else {
      spec = target;
    }
    if (spec === null || typeof spec !== 'object') throw new ArgumentError('to: expected a dtype, a device or { dtype, device }');
    const n = native();
    const dtype = spec.dtype === undefined ? this.dtype : checkDType(spec.dtype, 'to');
    const device = spec.device ?? this.device;
    const src = this.handle('to');
    if (dtype === this.dtype && device === this.device) {
      // Nothing to do: a new handle on the same storage, so ownership stays simple.
      return new Tensor(n.asStrided(src, [...this.shape], [...this.strides], this.offset));
    }
    const steps: NativeTensorHandle[] = [];
    const current = () => steps[steps.length - 1] ?? src;
    try {
      if (device !== this.device) {
        // Narrow before the transfer, widen after it: fewer bytes cross.
        if (dtype !== this.dtype && dtypeSize(dtype) < dtypeSize(this.dtype)) steps.push(n.copy(current(), dtype));
        steps.push(n.toDevice(current(), device));
      }
      if (current().meta()[0] !== dtype) steps.push(n.copy(current(), dtype));
    } catch (err) {
      for (const h of steps) h.dispose();
      throw err;
    }
    const out = steps.pop()!;
    for (const h of steps) h.dispose();
    return new Tensor(out);
  }

  add(other: Tensor | number): Tensor { return this.binary('add', other); }
  sub(other: Tensor | number): Tensor { return this.binary('sub', other); }
  mul(other: Tensor | number): Tensor { return this.binary('mul', other); }
  div(other: Tensor | number): Tensor { return this.binary('div', other); }

  private binary(op: 'add' | 'sub' | 'mul' | 'div', other: Tensor | number): Tensor {
    if (this.records(other)) return gradHooks!.binary(op, this, other);
    const n = native();
    if (typeof other === 'number') {
      if (!isFloatDType(this.dtype) && !Number.isInteger(other)) {
        throw new DTypeError(`${op}: ${other} is not an integer, so it cannot combine with ${this.describe()}`);
      }
      const scalar = n.full([], this.dtype, this.device, other);
      try { return new Tensor(n.binary(op, this.handle(op), scalar)); } finally { scalar.dispose(); }
    }
    if (!(other instanceof Tensor)) throw new ArgumentError(`${op}: expected a tensor or a number`);
    return new Tensor(n.binary(op, this.handle(op), other.handle(op)));
  }

  /** Sum over `dims` (all by default). Float dtypes keep their dtype; integer sums are i64. */
  sum(dims?: number | readonly number[], options: { keepdim?: boolean } = {}): Tensor {
    const list = dims === undefined ? [] : typeof dims === 'number' ? [dims] : [...dims];
    if (this.records()) return gradHooks!.sum(this, list, options.keepdim ?? false);
    return new Tensor(native().sum(this.handle('sum'), list, options.keepdim ?? false));
  }

  /** Mean over `dims` (all by default); float dtypes only. */
  mean(dims?: number | readonly number[], options: { keepdim?: boolean } = {}): Tensor {
    if (!isFloatDType(this.dtype)) throw new DTypeError(`mean: expected a float dtype, got ${this.describe()}`);
    const list = dims === undefined ? [...this.shape.keys()] : typeof dims === 'number' ? [dims] : [...dims];
    const count = list.reduce((n, d) => n * (this.shape[d < 0 ? d + this.ndim : d] ?? 1), 1);
    const s = this.sum(list, options);
    try { return s.mul(count === 0 ? NaN : 1 / count); } finally { s.dispose(); }
  }

  /**
   * The values, contiguous in row-major order; waits for queued work. bf16/f16
   * read as Float32Array. The type parameter names the dtype for typing
   * (`data<'i64'>()` gives a BigInt64Array); it defaults to the float case.
   */
  async data<D extends DType = 'f32'>(): Promise<DataTypeMap[D]> {
    const buffer = await native().read(this.handle('data'), readDType(this.dtype));
    return viewAs(buffer, this.dtype) as DataTypeMap[D];
  }

  /** Like data(), but blocks the JavaScript thread until the values are ready. */
  dataSync<D extends DType = 'f32'>(): DataTypeMap[D] {
    return viewAs(native().readSync(this.handle('dataSync'), readDType(this.dtype)), this.dtype) as DataTypeMap[D];
  }

  /** The raw little-endian bytes in this tensor's dtype (bf16/f16 as bit patterns). */
  async bytes(): Promise<Uint8Array> {
    return new Uint8Array(await native().read(this.handle('bytes'), this.dtype));
  }

  /** The values as nested JavaScript arrays (numbers, or bigints for i64). */
  async array(): Promise<unknown> {
    const flat = Array.from(await this.data() as ArrayLike<number | bigint>);
    const build = (dim: number, start: number): unknown => {
      if (dim === this.ndim) return flat[start];
      const step = this.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: this.shape[dim] }, (_, i) => build(dim + 1, start + i * step));
    };
    return build(0, 0);
  }
}
