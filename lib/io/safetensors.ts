/**
 * safetensors: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}},
 * then the raw little-endian data. Tensors are read one ranged read at a time,
 * so a file is never held whole in the JavaScript heap.
 */
import * as fs from 'fs';
import { DType, dtypeSize } from '../dtype';
import { DTypeError, FormatError } from '../errors';
import { CreateOptions, tensor } from '../creation';
import { Tensor } from '../tensor';

const FILE_DTYPES: Record<string, DType> = { F32: 'f32', BF16: 'bf16', F16: 'f16', I32: 'i32', I64: 'i64', U8: 'u8' };
const MAX_HEADER = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  /** Byte range inside the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Where the data section starts in the file. */
  dataStart: number;
}

/** Reads and checks the header: every claim about sizes is verified against the file. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await fs.promises.open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const fail = (what: string) => new FormatError(`${path}: not a valid safetensors file: ${what}`);
    if (size < 8) throw fail(`the file has ${size} bytes, fewer than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER || headerLen > size - 8) {
      throw fail(`the header claims ${headerLen} bytes but the file has ${size - 8} after the length`);
    }
    const headerBuf = Buffer.alloc(headerLen);
    await fh.read(headerBuf, 0, headerLen, 8);
    let json: unknown;
    try {
      json = JSON.parse(headerBuf.toString('utf8'));
    } catch (err) {
      throw fail(`the header is not JSON (${(err as Error).message})`);
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw fail('the header is not a JSON object');
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    const entries = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        metadata = (raw ?? {}) as Record<string, string>;
        continue;
      }
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (!e || typeof e !== 'object') throw fail(`entry '${name}' is not an object`);
      const dtype = typeof e.dtype === 'string' ? FILE_DTYPES[e.dtype] : undefined;
      if (!dtype) {
        throw new DTypeError(`${path}: tensor '${name}' has dtype ${JSON.stringify(e.dtype)}; supported: ${Object.keys(FILE_DTYPES).join(', ')}`);
      }
      const shape = e.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw fail(`tensor '${name}' has shape ${JSON.stringify(shape)}`);
      }
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0)) {
        throw fail(`tensor '${name}' has data_offsets ${JSON.stringify(off)}`);
      }
      const [begin, end] = off as number[];
      const want = shape.reduce((a: number, b: number) => a * b, 1) * dtypeSize(dtype);
      if (end < begin || end - begin !== want) {
        throw fail(`tensor '${name}' (${dtype}[${shape.join(',')}]) needs ${want} bytes but data_offsets [${begin}, ${end}] give ${end - begin}`);
      }
      if (end > dataSize) throw fail(`tensor '${name}' ends at byte ${end} but the data section has ${dataSize} bytes (truncated file?)`);
      entries.set(name, { dtype, shape: shape as number[], begin, end });
    }
    return { entries, metadata, dataStart };
  } finally {
    await fh.close();
  }
}

function viewBytes(bytes: Uint8Array, dtype: DType): ArrayBufferView {
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (dtype) {
    case 'f32': return new Float32Array(buf);
    case 'bf16': case 'f16': return new Uint16Array(buf);
    case 'i32': return new Int32Array(buf);
    case 'i64': return new BigInt64Array(buf);
    case 'u8': return new Uint8Array(buf);
  }
}

/** Loads tensors (all, or those `names` lists) from a safetensors file. */
export async function loadSafetensors(path: string, options: CreateOptions & { names?: string[] } = {}): Promise<Map<string, Tensor>> {
  const header = await readSafetensorsHeader(path);
  const names = options.names ?? [...header.entries.keys()];
  const out = new Map<string, Tensor>();
  const fh = await fs.promises.open(path, 'r');
  try {
    for (const name of names) {
      const e = header.entries.get(name);
      if (!e) throw new FormatError(`${path}: no tensor named '${name}'`);
      const bytes = Buffer.alloc(e.end - e.begin);
      const { bytesRead } = await fh.read(bytes, 0, bytes.length, header.dataStart + e.begin);
      if (bytesRead !== bytes.length) throw new FormatError(`${path}: tensor '${name}' is cut short`);
      const t = tensor(viewBytes(bytes, e.dtype) as Float32Array, e.shape, { dtype: e.dtype, device: options.device });
      out.set(name, options.dtype && options.dtype !== e.dtype ? convert(t, options.dtype) : t);
    }
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  } finally {
    await fh.close();
  }
  return out;
}

function convert(t: Tensor, dtype: DType): Tensor {
  const c = t.to(dtype);
  t.dispose();
  return c;
}

const DTYPE_NAMES: Record<DType, string> = { f32: 'F32', bf16: 'BF16', f16: 'F16', i32: 'I32', i64: 'I64', u8: 'U8' };

/** Writes tensors (in their dtypes, row-major) and string metadata to a safetensors file. */
export async function saveSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata: Record<string, string> = {}): Promise<void> {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const n = t.size * dtypeSize(t.dtype);
    header[name] = { dtype: DTYPE_NAMES[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]); // pad so data starts 8-aligned
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fh = await fs.promises.open(path, 'w');
  try {
    await fh.write(len);
    await fh.write(json);
    for (const [, t] of entries) await fh.write(await t.bytes());
  } finally {
    await fh.close();
  }
}
