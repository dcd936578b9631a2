/** Argument checks shared by the op modules (not exported from the package). */
import { ArgumentError } from '../errors';
import { NativeTensorHandle } from '../native';
import { Tensor } from '../tensor';

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return typeof v;
}

/** The native handle of a Tensor argument; anything else is an ArgumentError naming it. */
export function tensorArg(value: unknown, op: string, what: string): NativeTensorHandle {
  if (!(value instanceof Tensor)) throw new ArgumentError(`${op}: ${what} must be a Tensor, got ${describeValue(value)}`);
  return value.handle(op);
}

/** Like tensorArg, with null/undefined passed on as null. */
export function optionalTensorArg(value: unknown, op: string, what: string): NativeTensorHandle | null {
  return value === null || value === undefined ? null : tensorArg(value, op, what);
}

/**
 * An options object (undefined: an empty one). With `keys`, other keys are
 * an error (a misspelt option); without, they are ignored.
 */
export function optionsArg<T extends object>(options: unknown, op: string, keys?: readonly string[]): Partial<T> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ArgumentError(`${op}: options must be an object, got ${describeValue(options)}`);
  }
  if (keys) for (const k of Object.keys(options)) {
    if (!keys.includes(k)) throw new ArgumentError(`${op}: unknown option '${k}'; expected ${keys.join(', ')}`);
  }
  return options as Partial<T>;
}

/** A required finite number option. */
export function numberOption(o: Record<string, unknown>, key: string, op: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ArgumentError(`${op}: ${key} must be a finite number, got ${v === undefined ? 'nothing' : String(v)}`);
  }
  return v;
}

/** A required boolean option. */
export function booleanOption(o: Record<string, unknown>, key: string, op: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw new ArgumentError(`${op}: ${key} must be a boolean, got ${v === undefined ? 'nothing' : String(v)}`);
  return v;
}
