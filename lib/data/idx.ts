/**
 * IDX files, the format of MNIST and Fashion-MNIST: a magic number (two zero
 * bytes, an element type code, the number of dimensions), the dimensions as
 * big-endian u32, then the elements in C order. Only unsigned bytes (type
 * 0x08: 0x00000803 images, 0x00000801 labels) are read; files may be gzipped.
 */
import * as fs from 'fs';
import * as zlib from 'zlib';
import { promisify } from 'util';
import { FormatError } from '../errors';

export interface IdxArray {
  data: Uint8Array;
  shape: number[];
}

const TYPE_NAMES: Record<number, string> = { 0x08: 'u8', 0x09: 'i8', 0x0b: 'i16', 0x0c: 'i32', 0x0d: 'f32', 0x0e: 'f64' };
const gunzip = promisify(zlib.gunzip);

/** Parses IDX bytes (already decompressed); `name` is how errors refer to them. */
export function parseIdx(bytes: Uint8Array, name = `<${bytes.length}-byte buffer>`): IdxArray {
  const fail = (what: string) => new FormatError(`${name}: not a valid IDX file: ${what}`);
  if (bytes.length < 4) throw fail(`${bytes.length} bytes, too short for the 4-byte magic number`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (bytes[0] !== 0 || bytes[1] !== 0) throw fail(`bad magic number 0x${magic.toString(16).padStart(8, '0')} (expected 0x00000803 or 0x00000801)`);
  const type = bytes[2];
  const rank = bytes[3];
  if (type !== 0x08) {
    throw fail(`element type code 0x${type.toString(16).padStart(2, '0')} (${TYPE_NAMES[type] ?? 'unknown'}) is not supported; only unsigned bytes (0x08)`);
  }
  if (rank === 0) throw fail('the header declares no dimensions');
  const start = 4 + 4 * rank;
  if (bytes.length < start) throw fail(`truncated header: ${rank} dimensions need ${start} bytes, the file has ${bytes.length}`);
  const shape: number[] = [];
  for (let i = 0; i < rank; ++i) shape.push(view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const have = bytes.length - start;
  if (have < count) throw fail(`truncated: shape [${shape.join(', ')}] needs ${count} data bytes, the file has ${have}`);
  if (have > count) throw fail(`shape [${shape.join(', ')}] needs ${count} data bytes, the file has ${have} (${have - count} extra)`);
  return { data: new Uint8Array(bytes.buffer, bytes.byteOffset + start, count), shape };
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

function gzipError(path: string, err: unknown): FormatError {
  return new FormatError(`${path}: not a valid gzip file (${(err as Error).message})`);
}

/** Reads an IDX file, gunzipping it when it starts with the gzip magic (decompression runs off the JavaScript thread). */
export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Uint8Array = await fs.promises.readFile(path);
  if (isGzip(bytes)) {
    try {
      bytes = await gunzip(bytes);
    } catch (err) {
      throw gzipError(path, err);
    }
  }
  return parseIdx(bytes, path);
}

/** readIdx, blocking. */
export function readIdxSync(path: string): IdxArray {
  let bytes: Uint8Array = fs.readFileSync(path);
  if (isGzip(bytes)) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (err) {
      throw gzipError(path, err);
    }
  }
  return parseIdx(bytes, path);
}
