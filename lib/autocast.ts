/**
 * Mixed precision. Inside autocast('bf16', fn) the GEMM ops whose weights are
 * not packed (linear, matmul, convPatch) and attention round their operands
 * to bf16 and accumulate in f32: the CPU's bf16 GEMM kernels, one tensor-core
 * pass instead of three on CUDA (the CPU attention kernel keeps f32). Their
 * backward passes use the precision their forward ran with. Everything else keeps f32: parameters and optimizer state (the master
 * weights), LayerNorm statistics, softmax, attention's online softmax and the
 * losses, so updates too small for bf16 still land.
 *
 * autocast('f16', fn) does the same with IEEE fp16 operands (f16 tensor-core
 * passes on CUDA; on the CPU the f32 kernels on operands rounded to f16 as
 * they are packed). fp16 keeps 3 more mantissa bits than bf16 but overflows
 * beyond 65504 to Inf, so f16 training needs loss scaling.
 */
import { ArgumentError } from './errors';

export type MathPrecision = 'f32' | 'bf16' | 'f16';
export const MATH_PRECISIONS: readonly MathPrecision[] = ['f32', 'bf16', 'f16'];

let current: MathPrecision = 'f32';

/** The arithmetic the GEMM ops use when a call does not say. */
export function mathPrecision(): MathPrecision {
  return current;
}

/** Checks a precision option; undefined means the current autocast precision. */
export function resolvePrecision(precision: unknown, op: string): MathPrecision {
  if (precision === undefined) return current;
  if (!MATH_PRECISIONS.includes(precision as MathPrecision)) {
    const names = MATH_PRECISIONS.map((p) => `'${p}'`);
    throw new ArgumentError(`${op}: precision must be ${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}, got ${String(precision)}`);
  }
  return precision as MathPrecision;
}

/**
 * Runs `fn` with the GEMM ops in `precision` ('bf16' for mixed-precision
 * training and inference, 'f32' to turn it off inside an outer scope).
 * Synchronous only, like noGrad(): an await would leak the mode.
 */
export function autocast<T>(precision: MathPrecision, fn: () => T): T {
  const p = resolvePrecision(precision ?? null, 'autocast');
  if (typeof fn !== 'function') throw new ArgumentError('autocast: expected a function');
  const before = current;
  current = p;
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new ArgumentError('autocast: the function returned a Promise; the precision cannot follow an await. Call autocast around the synchronous part');
    }
    return result;
  } finally {
    current = before;
  }
}
