/**
 * PyTorch zip checkpoints (torch.save since 1.6): `<archive>/data.pkl`, a
 * pickle whose tensors name storages through persistent ids
 * ('storage', torch.FloatStorage, key, location, numel), and one raw
 * little-endian file per storage at `<archive>/data/<key>`. The pickle is
 * interpreted without executing anything (see pickle.ts); each storage is read
 * once, with ranged reads, and every tensor that views it is copied out into
 * compact memory of its own before the storage is released.
 */
import { DType, checkDType, dtypeSize, isFloatDType } from '../dtype';
import { ArgumentError, DTypeError, FormatError } from '../errors';
import { native, NativeTensorHandle } from '../native';
import { Device, Tensor } from '../tensor';
import { PickledTensor, PyGlobal, PyRecord, describe, unpickle } from './pickle';
import { ZipReader } from './zip';

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'f32',
  HalfStorage: 'f16',
  BFloat16Storage: 'bf16',
  LongStorage: 'i64',
  IntStorage: 'i32',
  ByteStorage: 'u8',
};

/** A storage as the pickle names it; its bytes are read only when a chosen tensor needs them. */
export class PthStorage {
  constructor(
    /** 'FloatStorage', 'DoubleStorage', ... */
    readonly typeName: string,
    /** undefined for storage types we cannot hold (DoubleStorage, BoolStorage, ...). */
    readonly dtype: DType | undefined,
    readonly key: string,
    readonly location: string,
    readonly numel: number,
  ) {}
}

export interface PthOptions {
  /** The top-level key holding the state dict ('model', 'ema', 'state_dict', ...); chosen automatically by default. */
  key?: string;
  /**
   * A prefix to strip from tensor names ('backbone.', 'module.'); names without
   * it stay as they are. By default 'module.' is stripped when every name has it.
   */
  prefix?: string;
  device?: Device;
  /** Converts floating-point tensors to this dtype; integer tensors keep theirs. */
  dtype?: DType;
}

/** The keys tried, in order, when no `key` is given and the top level is not itself a state dict. */
export const STATE_DICT_KEYS = ['model', 'state_dict', 'model_ema', 'ema', 'module'];

interface Checkpoint {
  zip: ZipReader;
  /** The archive's folder name. */
  root: string;
  value: unknown;
}

async function openCheckpoint(path: string): Promise<Checkpoint> {
  const zip = await ZipReader.open(path);
  try {
    // The folder name is whatever the file was called when saved: find it from data.pkl.
    const pkls = zip.entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (pkls.length === 0) {
      const nested = zip.entries.find((e) => e.name.endsWith('/data.pkl'));
      if (!nested) throw new FormatError(`${path}: not a PyTorch checkpoint: the zip archive has no <archive>/data.pkl`);
      pkls.push(nested);
    }
    if (pkls.length > 1) {
      throw new FormatError(`${path}: not a PyTorch checkpoint: the zip archive has ${pkls.length} data.pkl entries (${pkls.map((e) => e.name).join(', ')})`);
    }
    const pkl = pkls[0];
    const root = pkl.name.slice(0, -'/data.pkl'.length);
    const order = zip.get(`${root}/byteorder`);
    if (order) {
      const text = (await zip.read(order)).toString('latin1').trim();
      if (text === 'big') throw new FormatError(`${path}: the checkpoint was saved big-endian; only little-endian checkpoints are supported`);
      if (text !== 'little') throw new FormatError(`${path}: ${root}/byteorder says ${JSON.stringify(text)}, not 'little' or 'big'`);
    }
    const source = `${path} (${pkl.name})`;
    const storages = new Map<string, PthStorage>();
    const persistentLoad = (pid: unknown): PthStorage => {
      const bad = (what: string) => new FormatError(`${source}: bad persistent id ${describe(pid)}: ${what}`);
      if (!Array.isArray(pid) || pid[0] !== 'storage') throw bad("expected ('storage', type, key, location, numel)");
      if (pid.length !== 5) throw bad(`${pid.length} items instead of 5`);
      const [, type, key, location, numel] = pid;
      const typeName = type instanceof PyGlobal ? type.name : typeof type === 'string' ? type : undefined;
      if (typeName === undefined) throw bad(`the storage type is ${describe(type)}`);
      if (typeof key !== 'string' || !/^[\w.-]+$/.test(key)) throw bad(`the storage key is ${describe(key)}`);
      if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) throw bad(`the element count is ${describe(numel)}`);
      // The same storage is named once per tensor that uses it: share one object.
      const id = `${key}\0${typeName}`;
      const known = storages.get(id);
      if (known) {
        if (known.numel !== numel) throw bad(`storage '${key}' was named earlier with ${known.numel} elements`);
        return known;
      }
      const s = new PthStorage(typeName, STORAGE_DTYPES[typeName], key, String(location), numel);
      storages.set(id, s);
      return s;
    };
    const value = unpickle(await zip.read(pkl), { source, persistentLoad });
    return { zip, root, value };
  } catch (err) {
    await zip.close();
    throw err;
  }
}

type Leaf = { name: string; tensor: PickledTensor };

/** The tensors under `value`, named by their keys joined with '.'. */
function flatten(path: string, value: unknown, prefix: string): Leaf[] {
  const out: Leaf[] = [];
  const onPath = new Set<unknown>();
  const walk = (v: unknown, name: string, depth: number): void => {
    if (v instanceof PickledTensor) {
      out.push({ name, tensor: v });
      return;
    }
    if (v instanceof PyRecord && v.__class__.startsWith('torch.') && /rebuild/i.test(v.__class__)) {
      throw new FormatError(`${path}: tensor '${name}' is rebuilt by ${v.__class__}, which is not supported (sparse, quantized or device-specific tensors)`);
    }
    // A record's items are those of a dict or list subclass (a custom OrderedDict, say).
    const items = v instanceof PyRecord ? v.items ?? v.list : v;
    const children: [unknown, unknown][] | undefined =
      items instanceof Map ? [...items.entries()] : Array.isArray(items) ? items.map((c, i) => [i, c]) : undefined;
    if (!children) return; // other values (numbers, strings, records) carry no tensors
    // Pickles can be cyclic; nesting this deep is no state dict.
    if (onPath.has(v) || depth > 64) return;
    onPath.add(v);
    for (const [k, c] of children) walk(c, name === '' ? String(k) : `${name}.${String(k)}`, depth + 1);
    onPath.delete(v);
  };
  walk(value, prefix, 0);
  return out;
}

function topKeys(value: unknown): string[] {
  return value instanceof Map ? [...value.keys()].map(String) : [];
}

function listKeys(keys: string[]): string {
  return keys.length ? keys.map((k) => `'${k}'`).join(', ') : '(none)';
}

function whatIs(value: unknown): string {
  if (value instanceof PyRecord) return `a pickled ${value.__class__} object`;
  if (value instanceof PickledTensor) return 'a single tensor';
  return describe(value);
}

/** Picks the state dict: the `key` asked for, the top level itself, or the first known key that holds tensors. */
function chooseStateDict(path: string, value: unknown, key: string | undefined): { key: string | null; leaves: Leaf[] } {
  if (!(value instanceof Map)) {
    throw new FormatError(`${path}: the checkpoint holds ${whatIs(value)}, not a dict of tensors (save model.state_dict() instead)`);
  }
  const keys = topKeys(value);
  if (key !== undefined) {
    if (!value.has(key)) throw new ArgumentError(`${path}: no top-level key '${key}'; the checkpoint has ${listKeys(keys)}`);
    const leaves = flatten(path, value.get(key), '');
    if (!leaves.length) throw new FormatError(`${path}: '${key}' holds no tensors (it is ${whatIs(value.get(key))}); the checkpoint has ${listKeys(keys)}`);
    return { key, leaves };
  }
  if ([...value.values()].some((v) => v instanceof PickledTensor)) return { key: null, leaves: flatten(path, value, '') };
  for (const k of STATE_DICT_KEYS) {
    if (!value.has(k)) continue;
    const leaves = flatten(path, value.get(k), '');
    if (leaves.length) return { key: k, leaves };
  }
  throw new FormatError(`${path}: no state dict found: the top level holds no tensors and none of ${listKeys(STATE_DICT_KEYS)} does; `
    + `the checkpoint has ${listKeys(keys)} (choose one with the key option)`);
}

function stripPrefix(path: string, leaves: Leaf[], prefix: string | undefined): Leaf[] {
  let p = prefix;
  if (p === undefined) {
    p = leaves.length && leaves.every((l) => l.name.startsWith('module.')) ? 'module.' : '';
  } else if (p !== '' && !leaves.some((l) => l.name.startsWith(p!))) {
    const some = leaves.slice(0, 5).map((l) => `'${l.name}'`).join(', ');
    throw new ArgumentError(`${path}: no tensor name starts with '${p}' (names look like ${some})`);
  }
  const out = leaves.map((l) => ({ name: l.name.startsWith(p!) ? l.name.slice(p!.length) : l.name, tensor: l.tensor }));
  const seen = new Set<string>();
  for (const l of out) {
    if (seen.has(l.name)) {
      throw p ? new ArgumentError(`${path}: stripping '${p}' makes two tensors named '${l.name}'`)
        : new FormatError(`${path}: two tensors are named '${l.name}'`);
    }
    seen.add(l.name);
  }
  return out;
}

function isRowMajor(size: number[], stride: number[]): boolean {
  let expect = 1;
  for (let i = size.length - 1; i >= 0; --i) {
    if (size[i] !== 1 && stride[i] !== expect) return false;
    expect *= size[i];
  }
  return true;
}

const TYPED: Record<DType, new (b: ArrayBuffer) => ArrayBufferView> = {
  f32: Float32Array, bf16: Uint16Array, f16: Uint16Array, i32: Int32Array, i64: BigInt64Array, u8: Uint8Array,
};

/**
 * Loads the tensors of a PyTorch zip checkpoint (.pth/.pt/.bin) into a Map,
 * in the order the state dict lists them. Nothing in the file is executed.
 */
export async function loadPth(path: string, options: PthOptions = {}): Promise<Map<string, Tensor>> {
  const target = options.dtype === undefined ? undefined : checkDType(options.dtype, 'loadPth');
  const ck = await openCheckpoint(path);
  const n = native();
  const made = new Map<string, Tensor>();
  try {
    const chosen = chooseStateDict(path, ck.value, options.key);
    const leaves = stripPrefix(path, chosen.leaves, options.prefix);

    // Check every tensor before reading any data, grouping them by storage.
    const groups = new Map<PthStorage, Leaf[]>();
    for (const leaf of leaves) {
      const { name, tensor: t } = leaf;
      const s = t.storage;
      if (!(s instanceof PthStorage)) throw new FormatError(`${path}: tensor '${name}' has ${describe(s)} as its storage`);
      if (!s.dtype) {
        throw new DTypeError(`${path}: tensor '${name}' is stored as torch.${s.typeName}; supported storages: `
          + `${Object.entries(STORAGE_DTYPES).map(([k, v]) => `${k} (${v})`).join(', ')}`);
      }
      let hi = t.offset;
      const empty = t.size.some((d) => d === 0);
      for (let i = 0; i < t.size.length; ++i) hi += Math.max(0, t.size[i] - 1) * t.stride[i];
      if (empty ? t.offset > s.numel : hi >= s.numel) {
        throw new FormatError(`${path}: tensor '${name}' (size [${t.size.join(', ')}], stride [${t.stride.join(', ')}], offset ${t.offset}) `
          + `reaches element ${hi} of storage '${s.key}', which has ${s.numel} elements`);
      }
      const g = groups.get(s);
      if (g) g.push(leaf);
      else groups.set(s, [leaf]);
    }

    for (const [s, group] of groups) {
      const dtype = s.dtype!;
      const entryName = `${ck.root}/data/${s.key}`;
      const entry = ck.zip.get(entryName);
      if (!entry) throw new FormatError(`${path}: storage '${s.key}' of tensor '${group[0].name}' has no entry ${entryName}`);
      const nbytes = s.numel * dtypeSize(dtype);
      if (entry.size < nbytes) {
        throw new FormatError(`${path}: storage '${s.key}' holds ${s.numel} ${dtype} elements (${nbytes} bytes) but ${entryName} has ${entry.size} bytes`);
      }
      const ab = new ArrayBuffer(nbytes);
      if (entry.method === 0) {
        const range = await ck.zip.storedRange(entry);
        await ck.zip.readAt(range.offset, nbytes, new Uint8Array(ab));
      } else {
        new Uint8Array(ab).set((await ck.zip.read(entry)).subarray(0, nbytes));
      }
      const storage = n.fromHost(new TYPED[dtype](ab), [s.numel], dtype, 'cpu');
      try {
        for (const { name, tensor: t } of group) {
          const want = target !== undefined && isFloatDType(dtype) ? target : dtype;
          const numel = t.size.reduce((a, b) => a * b, 1);
          let h: NativeTensorHandle;
          if (group.length === 1 && t.offset === 0 && numel === s.numel && want === dtype && isRowMajor(t.size, t.stride)) {
            // The tensor is its whole storage: keep it, no copy.
            h = n.reshape(storage, t.size);
          } else {
            const view = n.asStrided(storage, t.size, t.stride, t.offset);
            try { h = n.copy(view, want); } finally { view.dispose(); }
          }
          let out = new Tensor(h);
          if (options.device !== undefined && options.device !== out.device) {
            const moved = out.to({ device: options.device });
            out.dispose();
            out = moved;
          }
          made.set(name, out);
        }
      } finally {
        storage.dispose();
      }
    }
    // In state dict order, not storage order.
    return new Map(leaves.map((l) => [l.name, made.get(l.name)!]));
  } catch (err) {
    for (const t of made.values()) t.dispose();
    throw err;
  } finally {
    await ck.zip.close();
  }
}

export interface PthKeyInfo {
  key: string;
  /** 'dict', 'list', 'tensor', a record's Python class ('argparse.Namespace'), or a plain value's type. */
  type: string;
  /** Tensors under this key (nested dicts included). */
  tensors: number;
  /** Plain values (numbers, strings, booleans, None) as they are. */
  value?: number | string | boolean | null;
}

export interface PthInfo {
  /** The archive's folder name. */
  archive: string;
  /** 'dict', or what the top level is otherwise. */
  type: string;
  keys: PthKeyInfo[];
  /** The key loadPth picks by default: null when the top level is itself the state dict, undefined when none fits. */
  stateDict: string | null | undefined;
  /** Tensors in that state dict. */
  tensors: number;
}

function typeOf(v: unknown): string {
  if (v instanceof Map) return 'dict';
  if (v instanceof Set) return 'set';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  if (v instanceof PickledTensor) return 'tensor';
  if (v instanceof PyRecord) return v.__class__;
  if (v instanceof PyGlobal) return `reference to ${v.qualname}`;
  if (v instanceof Uint8Array) return 'bytes';
  if (v === null) return 'None';
  return typeof v;
}

/** The top-level structure of a checkpoint, from its pickle alone: no tensor data is read. */
export async function readPthInfo(path: string): Promise<PthInfo> {
  const ck = await openCheckpoint(path);
  try {
    const v = ck.value;
    const keys: PthKeyInfo[] = [];
    if (v instanceof Map) {
      for (const [k, c] of v) {
        const info: PthKeyInfo = { key: String(k), type: typeOf(c), tensors: flatten(path, c, '').length };
        if (c === null || ['number', 'string', 'boolean'].includes(typeof c)) info.value = c as number | string | boolean | null;
        else if (typeof c === 'bigint') info.value = c.toString();
        keys.push(info);
      }
    }
    let stateDict: string | null | undefined;
    let tensors = 0;
    try {
      const chosen = chooseStateDict(path, v, undefined);
      stateDict = chosen.key;
      tensors = chosen.leaves.length;
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
    }
    return { archive: ck.root, type: typeOf(v), keys, stateDict, tensors };
  } finally {
    await ck.zip.close();
  }
}
