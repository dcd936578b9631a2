/** NumPy .npy files (format 1.0–3.0) holding little-endian float32 arrays in C order. */
import * as fs from 'fs';
import { DTypeError, FormatError } from '../errors';
import { tensor } from '../creation';
import { Tensor } from '../tensor';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

export async function loadNpy(path: string): Promise<Tensor> {
  const buf = await fs.promises.readFile(path);
  const fail = (what: string) => new FormatError(`${path}: not a valid .npy file: ${what}`);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) throw fail('missing the \\x93NUMPY magic');
  const major = buf[6];
  if (major < 1 || major > 3) throw fail(`unsupported format version ${major}.${buf[7]}`);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > buf.length) throw fail(`the header claims ${headerLen} bytes but the file is shorter`);
  const header = buf.subarray(start, start + headerLen).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw fail(`cannot parse the header ${JSON.stringify(header.trim())}`);
  if (descr !== '<f4') throw new DTypeError(`${path}: holds '${descr}' data; expected little-endian float32 ('<f4')`);
  if (fortran === 'True') throw new FormatError(`${path}: Fortran-order arrays are not supported; save with numpy.ascontiguousarray`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw fail(`bad shape (${shapeText})`);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = buf.subarray(start + headerLen);
  if (data.length !== n * 4) throw fail(`shape (${shape.join(', ')}) needs ${n * 4} data bytes, the file has ${data.length}`);
  const values = new Float32Array(n);
  Buffer.from(values.buffer).set(data);
  return tensor(values, shape);
}

export async function saveNpy(path: string, t: Tensor): Promise<void> {
  const values = await (t.dtype === 'f32' ? t : t.to('f32')).data();
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n'; // data starts 64-aligned
  const head = Buffer.alloc(10);
  MAGIC.copy(head);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  await fs.promises.writeFile(path, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(values.buffer, values.byteOffset, values.byteLength)]));
}
