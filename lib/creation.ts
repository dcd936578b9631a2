/** Factory functions: tensor(), zeros(), ones(), full(), arange(), randn(), rand(). */
import { DType, checkDType } from './dtype';
import { ArgumentError, DTypeError, ShapeError } from './errors';
import { native } from './native';
import { defaultDevice } from './runtime';
import { Device, Tensor, recordingHooks } from './tensor';

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
}

type NestedNumbers = number | bigint | NestedNumbers[];
export type TensorData =
  | Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array
  | NestedNumbers[];

function defaultDType(data: TensorData): DType {
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof BigInt64Array) return 'i64';
  if (data instanceof Uint8Array) return 'u8';
  if (data instanceof Uint16Array) {
    throw new DTypeError('tensor: a Uint16Array holds raw bf16/f16 bits; say which with { dtype: "bf16" } or { dtype: "f16" }');
  }
  return 'f32';
}

/** Flattens nested arrays, checking that they are rectangular. */
function flatten(data: NestedNumbers[]): { shape: number[]; values: (number | bigint)[] } {
  const shape: number[] = [];
  let level: unknown = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  const values: (number | bigint)[] = [];
  const walk = (node: unknown, dim: number, where: string): void => {
    if (dim === shape.length) {
      if (typeof node !== 'number' && typeof node !== 'bigint') {
        throw new ShapeError(`tensor: expected a number at ${where}, got ${Array.isArray(node) ? 'an array' : typeof node}`);
      }
      values.push(node);
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[dim]) {
      throw new ShapeError(`tensor: nested arrays are ragged: expected ${shape[dim]} elements at ${where}`);
    }
    node.forEach((child, i) => walk(child, dim + 1, `${where}[${i}]`));
  };
  walk(data, 0, 'data');
  return { shape, values };
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

function toTypedArray(values: (number | bigint)[], dtype: DType): ArrayBufferView {
  if (dtype === 'i64' && values.some((v) => typeof v === 'bigint')) {
    return BigInt64Array.from(values, (v, i) => {
      const b = typeof v === 'bigint' ? v : Number.isSafeInteger(v) ? BigInt(v) : NaN;
      if (typeof b !== 'bigint' || b < I64_MIN || b > I64_MAX) {
        throw new DTypeError(`tensor: value ${v} at index ${i} is not an i64 integer`);
      }
      return b;
    });
  }
  return Float64Array.from(values, (v, i) => {
    if (typeof v === 'bigint') throw new DTypeError(`tensor: bigint ${v} at index ${i} needs dtype i64`);
    if (typeof v !== 'number') throw new DTypeError(`tensor: element ${i} is not a number`);
    return v;
  });
}

/**
 * A tensor from JavaScript data. `data` is a typed array (Float32Array,
 * Float64Array, Int32Array, BigInt64Array, Uint8Array; Uint16Array for raw
 * bf16/f16 bits) or (nested) arrays of numbers/bigints. Without `shape`,
 * nested arrays give their own shape and flat data a 1-D shape. The data is
 * copied; the default dtype follows the data (f32 for floats and numbers).
 */
export function tensor(data: TensorData, shape?: readonly number[], options: CreateOptions = {}): Tensor {
  const dtype = options.dtype === undefined ? defaultDType(data) : checkDType(options.dtype, 'tensor');
  const device = options.device ?? defaultDevice();
  let view: ArrayBufferView;
  let inferred: number[];
  if (ArrayBuffer.isView(data)) {
    view = data;
    inferred = [(data as unknown as ArrayLike<number>).length];
  } else if (Array.isArray(data)) {
    const flat = flatten(data);
    view = toTypedArray(flat.values, dtype);
    inferred = flat.shape;
  } else {
    throw new ArgumentError('tensor: data must be a typed array or an array of numbers');
  }
  if (shape !== undefined && !Array.isArray(shape)) throw new ShapeError('tensor: shape must be an array of integers');
  return new Tensor(native().fromHost(view, shape === undefined ? inferred : [...shape], dtype, device));
}

function fullWith(fn: string, shape: readonly number[], value: number, options: CreateOptions): Tensor {
  if (!Array.isArray(shape)) throw new ShapeError(`${fn}: shape must be an array of integers`);
  const dtype = options.dtype === undefined ? 'f32' : checkDType(options.dtype, fn);
  return new Tensor(native().full([...shape], dtype, options.device ?? defaultDevice(), value));
}

export function zeros(shape: readonly number[], options: CreateOptions = {}): Tensor {
  return fullWith('zeros', shape, 0, options);
}
export function ones(shape: readonly number[], options: CreateOptions = {}): Tensor {
  return fullWith('ones', shape, 1, options);
}
export function full(shape: readonly number[], value: number, options: CreateOptions = {}): Tensor {
  if (typeof value !== 'number') throw new ArgumentError('full: value must be a number');
  return fullWith('full', shape, value, options);
}

/**
 * Values start, start + step, ... below stop (numpy semantics):
 * arange(5), arange(2, 10, 2).
 */
export function arange(start: number, stop?: number, step = 1, options: CreateOptions = {}): Tensor {
  if (stop === undefined) [start, stop] = [0, start];
  for (const [k, v] of Object.entries({ start, stop, step })) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ArgumentError(`arange: ${k} must be a finite number`);
  }
  if (step === 0) throw new ArgumentError('arange: step must not be 0');
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const dtype = options.dtype === undefined ? 'f32' : checkDType(options.dtype, 'arange');
  return new Tensor(native().arange(start, step, length, dtype, options.device ?? defaultDevice()));
}

// Unseeded draws use the global seed and a counter, so a program's random
// tensors repeat run to run and manualSeed() restarts the sequence.
let globalSeed = 0x5eed;
let drawCounter = 0;

/** Restarts the sequence of unseeded random tensors. */
export function manualSeed(seed: number): void {
  checkSeed(seed, 'manualSeed');
  globalSeed = seed;
  drawCounter = 0;
}

function checkSeed(seed: unknown, fn: string): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
    throw new ArgumentError(`${fn}: seed must be a non-negative safe integer, got ${String(seed)}`);
  }
  return seed;
}

export interface RandomOptions extends CreateOptions {
  /** Same seed, same values, on every device and for any thread count. */
  seed?: number;
}

function random(fn: string, shape: readonly number[], normal: boolean, a: number, b: number, options: RandomOptions): Tensor {
  if (!Array.isArray(shape)) throw new ShapeError(`${fn}: shape must be an array of integers`);
  const dtype = options.dtype === undefined ? 'f32' : checkDType(options.dtype, fn);
  const [seed, stream] = options.seed === undefined ? [globalSeed, ++drawCounter] : [checkSeed(options.seed, fn), 0];
  return new Tensor(native().random([...shape], dtype, options.device ?? defaultDevice(), normal, a, b, seed, stream));
}

/** Normal samples (Philox4x32-10 + Box-Muller). */
export function randn(shape: readonly number[], options: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  return random('randn', shape, true, options.mean ?? 0, options.std ?? 1, options);
}

/** Uniform samples in [low, high). */
export function rand(shape: readonly number[], options: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  return random('rand', shape, false, options.low ?? 0, options.high ?? 1, options);
}

/** Joins tensors along `dim` (default 0): same dtype and device, equal other dims. */
export function concat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.some((t) => !(t instanceof Tensor))) {
    throw new ArgumentError('concat: expected an array of tensors');
  }
  const hooks = recordingHooks(tensors);
  if (hooks) return hooks.concat(tensors, dim);
  return new Tensor(native().concat(tensors.map((t) => t.handle('concat')), dim));
}
