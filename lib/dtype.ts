import { DTypeError } from './errors';

/** Element types. bf16/f16 values are read back as Float32Array. */
export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'i64' | 'u8';
export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32', 'i64', 'u8'];

/** What `await tensor.data()` returns for each dtype. */
export interface DataTypeMap {
  f32: Float32Array;
  bf16: Float32Array;
  f16: Float32Array;
  i32: Int32Array;
  i64: BigInt64Array;
  u8: Uint8Array;
}
export type TypedData = DataTypeMap[DType];

export function dtypeSize(dtype: DType): number {
  return { f32: 4, bf16: 2, f16: 2, i32: 4, i64: 8, u8: 1 }[dtype];
}

export function isFloatDType(dtype: DType): boolean {
  return dtype === 'f32' || dtype === 'bf16' || dtype === 'f16';
}

export function checkDType(value: unknown, where: string): DType {
  if (typeof value === 'string' && (DTYPES as readonly string[]).includes(value)) return value as DType;
  throw new DTypeError(`${where}: unknown dtype ${JSON.stringify(value)}: expected one of ${DTYPES.join(', ')}`);
}

/** The dtype in which values are read back (the 16-bit floats widen to f32). */
export function readDType(dtype: DType): DType {
  return dtype === 'bf16' || dtype === 'f16' ? 'f32' : dtype;
}
