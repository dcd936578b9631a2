import * as fs from 'fs';
import { ArgumentError, FormatError } from '../errors';
import { CreateOptions } from '../creation';
import { Tensor } from '../tensor';
import { loadSafetensors, saveSafetensors } from './safetensors';
import { loadPth, PthOptions } from './pth';

export { loadSafetensors, saveSafetensors, readSafetensorsHeader } from './safetensors';
export type { SafetensorsEntry, SafetensorsHeader } from './safetensors';
export { loadPth, readPthInfo, STATE_DICT_KEYS } from './pth';
export type { PthOptions, PthInfo, PthKeyInfo } from './pth';

export type LoadOptions = CreateOptions & PthOptions & {
  /** safetensors only: load just these tensors. */
  names?: string[];
};

const SUPPORTED = 'supported: safetensors (.safetensors) and PyTorch zip checkpoints (torch.save since 1.6: .pth, .pt, .bin)';

/**
 * Loads a checkpoint's tensors, choosing the reader from the file: a
 * .safetensors name or a safetensors header, or a zip archive (PyTorch).
 * `key` and `prefix` apply to PyTorch checkpoints (see loadPth).
 */
export async function load(path: string, options: LoadOptions = {}): Promise<Map<string, Tensor>> {
  if (path.toLowerCase().endsWith('.safetensors')) return loadSafetensors(path, options);
  const head = Buffer.alloc(9);
  const fh = await fs.promises.open(path, 'r');
  let got: number;
  try {
    got = (await fh.read(head, 0, head.length, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  if (got >= 4 && head.readUInt32LE(0) === 0x04034b50) return loadPth(path, options);
  // A safetensors file under another name: a sane header length, then JSON.
  if (got === 9 && head.readBigUInt64LE(0) < 100n * 1024n * 1024n && head[8] === 0x7b) return loadSafetensors(path, options);
  if (got >= 1 && head[0] === 0x80) {
    throw new FormatError(`${path}: a plain pickle (a legacy torch.save file from before PyTorch 1.6?), which is not supported: `
      + `re-save it with a recent PyTorch; ${SUPPORTED}`);
  }
  throw new FormatError(`${path}: not a checkpoint format this package reads; ${SUPPORTED}`);
}

/** Saves tensors as safetensors (the only format written). */
export async function save(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata: Record<string, string> = {}): Promise<void> {
  if (/\.(pth|pt|bin|ckpt)$/i.test(path)) {
    throw new ArgumentError(`save: ${path}: only safetensors is written; name the file .safetensors`);
  }
  return saveSafetensors(path, tensors, metadata);
}
export { loadNpy, saveNpy } from './npy';
