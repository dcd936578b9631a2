// PyTorch zip checkpoints: the zip reader, the pickle interpreter (inert, never
// executing), loadPth's state-dict choice and views, corrupt files, the convert CLI.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import * as vl from '../lib';
import { dtypeSize } from '../lib/dtype';
import { convertCheckpoint } from '../lib/cli/convert';
import { PyRecord, unpickle } from '../lib/io/pickle';
import { ZipReader, crc32 } from '../lib/io/zip';
import { repoRoot, runNode, settleGc } from './helpers';

const fixtures = path.join(__dirname, 'fixtures');
const pthDir = path.join(fixtures, 'pth');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-pth-'));
const PAYLOAD_MARKER = '/tmp/visionllama-pth-payload-ran';

async function same(a: vl.Tensor, b: vl.Tensor): Promise<boolean> {
  return a.dtype === b.dtype && JSON.stringify(a.shape) === JSON.stringify(b.shape)
    && Buffer.from(await a.bytes()).equals(Buffer.from(await b.bytes()));
}

function disposeAll(...maps: Map<string, vl.Tensor>[]): void {
  for (const m of maps) for (const t of m.values()) t.dispose();
}

/** The expected tensors of one case of expected.safetensors (see make_pth_fixtures.py). */
let expectedAll: Map<string, vl.Tensor>;
function expected(kase: string): Map<string, vl.Tensor> {
  const out = new Map<string, vl.Tensor>();
  for (const [k, t] of expectedAll) if (k.startsWith(`${kase}|`)) out.set(k.slice(kase.length + 1), t);
  if (!out.size) throw new Error(`no expected tensors for ${kase}`);
  return out;
}

async function expectTensors(got: Map<string, vl.Tensor>, want: Map<string, vl.Tensor>): Promise<void> {
  expect([...got.keys()]).toEqual([...want.keys()]);
  for (const [k, t] of want) {
    const u = got.get(k)!;
    expect({ k, dtype: u.dtype, shape: u.shape }).toEqual({ k, dtype: t.dtype, shape: t.shape });
    expect({ k, same: await same(u, t) }).toEqual({ k, same: true });
    expect(u.isContiguous).toBe(true);
  }
}

// ---- a small zip writer, for ZIP64, deflated entries and edited archives ----

interface ZipSpec { name: string; data: Buffer; deflate?: boolean }

function makeZip(entries: ZipSpec[], { zip64 = false } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  const SAT = 0xffffffff;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const body = e.deflate ? zlib.deflateRawSync(e.data) : e.data;
    const crc = crc32(e.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(zip64 ? 45 : 20, 4);
    local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    let localExtra = Buffer.alloc(0);
    if (zip64) {
      local.writeUInt32LE(SAT, 18);
      local.writeUInt32LE(SAT, 22);
      localExtra = Buffer.alloc(20);
      localExtra.writeUInt16LE(1, 0);
      localExtra.writeUInt16LE(16, 2);
      localExtra.writeBigUInt64LE(BigInt(e.data.length), 4);
      localExtra.writeBigUInt64LE(BigInt(body.length), 12);
    } else {
      local.writeUInt32LE(body.length, 18);
      local.writeUInt32LE(e.data.length, 22);
    }
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(localExtra.length, 28);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(zip64 ? 45 : 20, 4);
    c.writeUInt16LE(zip64 ? 45 : 20, 6);
    c.writeUInt16LE(e.deflate ? 8 : 0, 10);
    c.writeUInt32LE(crc, 16);
    let centralExtra = Buffer.alloc(0);
    if (zip64) {
      c.writeUInt32LE(SAT, 20);
      c.writeUInt32LE(SAT, 24);
      c.writeUInt32LE(SAT, 42);
      centralExtra = Buffer.alloc(28);
      centralExtra.writeUInt16LE(1, 0);
      centralExtra.writeUInt16LE(24, 2);
      centralExtra.writeBigUInt64LE(BigInt(e.data.length), 4);
      centralExtra.writeBigUInt64LE(BigInt(body.length), 12);
      centralExtra.writeBigUInt64LE(BigInt(offset), 20);
    } else {
      c.writeUInt32LE(body.length, 20);
      c.writeUInt32LE(e.data.length, 24);
      c.writeUInt32LE(offset, 42);
    }
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(centralExtra.length, 30);
    parts.push(local, name, localExtra, body);
    central.push(c, name, centralExtra);
    offset += local.length + name.length + localExtra.length + body.length;
  }
  const cd = Buffer.concat(central);
  const tail: Buffer[] = [];
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  if (zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(rec, loc);
    eocd.writeUInt16LE(0xffff, 8);
    eocd.writeUInt16LE(0xffff, 10);
    eocd.writeUInt32LE(SAT, 12);
    eocd.writeUInt32LE(SAT, 16);
  } else {
    eocd.writeUInt16LE(entries.length, 8);
    eocd.writeUInt16LE(entries.length, 10);
    eocd.writeUInt32LE(cd.length, 12);
    eocd.writeUInt32LE(offset, 16);
  }
  return Buffer.concat([...parts, cd, ...tail, eocd]);
}

async function zipEntries(file: string): Promise<ZipSpec[]> {
  const z = await ZipReader.open(file);
  try {
    const out: ZipSpec[] = [];
    for (const e of z.entries) out.push({ name: e.name, data: await z.read(e) });
    return out;
  } finally {
    await z.close();
  }
}

function write(name: string, data: Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return file;
}

// ---- a small pickle writer (protocol 2) for hand-made checkpoints ----

const op = (...bytes: number[]) => Buffer.from(bytes);
const str = (s: string) => {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(b.length);
  return Buffer.concat([op(0x58), len, b]);
};
const int = (n: number) => {
  const b = Buffer.alloc(5);
  b[0] = 0x4a;
  b.writeInt32LE(n, 1);
  return b;
};
const global = (m: string, n: string) => Buffer.from(`c${m}\n${n}\n`, 'latin1');
const tuple = (...items: Buffer[]) => Buffer.concat([op(0x28), ...items, op(0x74)]);

interface TensorSpec { name: string; storage: string; key: string; numel: number; offset: number; size: number[]; stride: number[] }

/** {'model': {name: tensor, ...}} as torch.save pickles it. */
function checkpointPickle(tensors: TensorSpec[]): Buffer {
  const items = tensors.map((t) => Buffer.concat([
    str(t.name),
    global('torch._utils', '_rebuild_tensor_v2'),
    tuple(
      Buffer.concat([tuple(str('storage'), global('torch', t.storage), str(t.key), str('cpu'), int(t.numel)), op(0x51)]),
      int(t.offset), tuple(...t.size.map(int)), tuple(...t.stride.map(int)), op(0x89),
      global('collections', 'OrderedDict'), op(0x29, 0x52),
    ),
    op(0x52),
  ]));
  return Buffer.concat([op(0x80, 2, 0x7d), str('model'), op(0x7d, 0x28), ...items, op(0x75, 0x73, 0x2e)]);
}

function checkpointZip(pkl: Buffer, storages: Record<string, Buffer>, extra: ZipSpec[] = []): Buffer {
  return makeZip([
    { name: 'ck/data.pkl', data: pkl },
    ...Object.entries(storages).map(([k, data]) => ({ name: `ck/data/${k}`, data })),
    { name: 'ck/version', data: Buffer.from('3\n') },
    ...extra,
  ]);
}

const floats = (...v: number[]) => Buffer.from(new Float32Array(v).buffer);

async function formatError(p: Promise<unknown>, file: string, message: RegExp): Promise<void> {
  const err = await p.then(() => new Error(`${file} loaded without an error`), (e) => e);
  expect(err.message).toMatch(message);
  expect(err).toBeInstanceOf(vl.FormatError);
  expect(err.message).toContain(file);
  expect(err.message).toMatch(message);
}

beforeAll(async () => {
  expectedAll = await vl.io.loadSafetensors(path.join(pthDir, 'expected.safetensors'));
});
afterAll(() => {
  disposeAll(expectedAll);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('PyTorch checkpoints', () => {
  test.each(['plain-tiny', 'plain-tiny-autoscale', 'pyramid-tiny'])('%s.weights.pth holds the same tensors as the .safetensors', async (name) => {
    const pth = await vl.io.load(path.join(fixtures, 'models', `${name}.weights.pth`));
    const st = await vl.io.load(path.join(fixtures, 'models', `${name}.weights.safetensors`));
    expect([...pth.keys()].sort()).toEqual([...st.keys()].sort());
    for (const [k, t] of st) expect({ k, same: await same(pth.get(k)!, t) }).toEqual({ k, same: true });
    disposeAll(pth, st);
  });

  test.each([
    ['deit.pth', {}, 'deit.pth'],
    ['deit.pth', { key: 'optimizer' }, 'deit.pth@optimizer'],
    ['mmpretrain.pth', {}, 'mmpretrain.pth'],
    ['subclass.pth', {}, 'subclass.pth'],
    ['dit.pth', {}, 'dit.pth'],
    ['dit.pth', { key: 'ema' }, 'dit.pth@ema'],
    ['ddp.pth', {}, 'ddp.pth'],
    ['dtypes.pth', {}, 'dtypes.pth'],
    ['views.pth', {}, 'views.pth'],
  ])('%s %j loads as PyTorch sees it', async (file, options, kase) => {
    const got = await vl.io.loadPth(path.join(pthDir, file), options);
    await expectTensors(got, expected(kase));
    disposeAll(got);
  });

  test('prefix strips a name prefix; names without it stay', async () => {
    const got = await vl.io.loadPth(path.join(pthDir, 'mmpretrain.pth'), { prefix: 'backbone.' });
    const want = [...expected('mmpretrain.pth').keys()].map((k) => k.replace(/^backbone\./, ''));
    expect([...got.keys()]).toEqual(want);
    expect(want).toContain('head.fc.weight');
    disposeAll(got);
    await expect(vl.io.loadPth(path.join(pthDir, 'mmpretrain.pth'), { prefix: 'encoder.' }))
      .rejects.toThrow(/no tensor name starts with 'encoder.'/);
    // An explicit prefix of '' keeps DistributedDataParallel's 'module.'.
    const ddp = await vl.io.loadPth(path.join(pthDir, 'ddp.pth'), { prefix: '' });
    expect([...ddp.keys()].every((k) => k.startsWith('module.'))).toBe(true);
    disposeAll(ddp);
  });

  test('views of one storage come back as compact copies, the storage released', async () => {
    await vl.synchronize();
    await settleGc(() => vl.memory().cpu.gcReleased);
    const base = vl.memory().cpu;
    const got = await vl.io.loadPth(path.join(pthDir, 'views.pth'));
    const b = got.get('base')!;
    const transposed = got.get('transposed')!;
    expect(transposed.shape).toEqual([6, 4]);
    expect(await transposed.array()).toEqual(Array.from({ length: 6 }, (_, j) => Array.from({ length: 4 }, (_, i) => i * 6 + j)));
    expect(await got.get('rows')!.array()).toEqual([[6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17]]);
    expect(await got.get('flat_slice')!.array()).toEqual([5, 6, 7, 8]);
    expect(await got.get('expanded')!.array()).toEqual([[1, 2, 3], [1, 2, 3]]);
    for (const t of got.values()) if (t !== b) expect(t.sharesStorage(b)).toBe(false);
    let bytes = 0;
    for (const t of got.values()) bytes += t.size * dtypeSize(t.dtype);
    const m = vl.memory().cpu;
    expect(m.tensors - base.tensors).toBe(got.size);
    expect(m.bytes - base.bytes).toBe(bytes);
    disposeAll(got);
  });

  test('dtype converts floating-point tensors only; device places them', async () => {
    const got = await vl.io.loadPth(path.join(pthDir, 'dtypes.pth'), { dtype: 'bf16', device: 'cpu' });
    const want = expected('dtypes.pth');
    for (const [k, t] of want) {
      const u = got.get(k)!;
      expect({ k, dtype: u.dtype }).toEqual({ k, dtype: ['f32', 'f16', 'bf16'].includes(t.dtype) ? 'bf16' : t.dtype });
      expect(u.device).toBe('cpu');
    }
    expect(Array.from(await got.get('i64')!.data<'i64'>())).toEqual([1n, -2n, 2n ** 40n]);
    using f16 = want.get('f16')!.to('bf16');
    expect(await same(got.get('f16')!, f16)).toBe(true);
    disposeAll(got);
  });

  test('readPthInfo summarizes the top level without reading tensor data', async () => {
    const info = await vl.io.readPthInfo(path.join(pthDir, 'deit.pth'));
    expect(info.archive).toBe('deit');
    expect(info.stateDict).toBe('model');
    expect(info.tensors).toBe(12);
    expect(info.keys.map((k) => [k.key, k.type])).toEqual([
      ['model', 'dict'], ['optimizer', 'dict'], ['lr_scheduler', 'dict'], ['epoch', 'number'], ['args', 'argparse.Namespace'],
    ]);
    expect(info.keys.find((k) => k.key === 'epoch')!.value).toBe(299);
    expect(info.keys.find((k) => k.key === 'optimizer')!.tensors).toBe(3);
    expect((await vl.io.readPthInfo(path.join(pthDir, 'ddp.pth'))).stateDict).toBeNull();
    expect((await vl.io.readPthInfo(path.join(pthDir, 'mmpretrain.pth'))).stateDict).toBe('state_dict');
  });

  test('a key that is not there lists the keys that are', async () => {
    const file = path.join(pthDir, 'dit.pth');
    const err = await vl.io.loadPth(file, { key: 'teacher' }).catch((e) => e);
    expect(err).toBeInstanceOf(vl.ArgumentError);
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/no top-level key 'teacher'; the checkpoint has 'model', 'ema', 'opt', 'args'/);
    await formatError(vl.io.loadPth(file, { key: 'args' }), file, /'args' holds no tensors \(it is a pickled argparse.Namespace object\)/);
  });

  test('a pickle naming os.system and eval loads as inert records and runs nothing', async () => {
    fs.rmSync(PAYLOAD_MARKER, { force: true });
    const file = path.join(pthDir, 'evil.pth');
    // The payload is really there: torch.load would run `touch PAYLOAD_MARKER`.
    const pkl = (await zipEntries(file)).find((e) => e.name.endsWith('/data.pkl'))!.data;
    expect(pkl.includes(Buffer.from('posix\nsystem'))).toBe(true);
    expect(pkl.includes(Buffer.from(`touch ${PAYLOAD_MARKER}`))).toBe(true);
    const value = unpickle(pkl, { persistentLoad: () => null }) as Map<string, unknown>;
    const payload = value.get('payload') as PyRecord;
    expect(payload).toBeInstanceOf(PyRecord);
    expect(payload.__class__).toBe('posix.system');
    expect(payload.args).toEqual([`touch ${PAYLOAD_MARKER}`]);
    expect(((value.get('more') as unknown[])[0] as PyRecord).__class__).toMatch(/^(__builtin__|builtins)\.eval$/);
    const info = await vl.io.readPthInfo(file);
    expect(info.keys.find((k) => k.key === 'payload')!.type).toBe('posix.system');
    const got = await vl.io.loadPth(file);
    await expectTensors(got, expected('evil.pth'));
    disposeAll(got);
    expect(fs.existsSync(PAYLOAD_MARKER)).toBe(false);
  });

  test('ZIP64 archives with deflated entries read the same', async () => {
    const src = path.join(pthDir, 'views.pth');
    const entries = await zipEntries(src);
    const file = write('zip64.pth', makeZip(entries.map((e, i) => ({ ...e, deflate: i % 2 === 0 })), { zip64: true }));
    const z = await ZipReader.open(file);
    expect(z.entries.map((e) => e.name)).toEqual(entries.map((e) => e.name));
    expect(z.entries[0].method).toBe(8);
    await expect(z.storedRange(z.entries[0])).rejects.toThrow(/is compressed/);
    const stored = await z.storedRange(z.entries[1]);
    expect(Buffer.from(await z.readAt(stored.offset, stored.size)).equals(entries[1].data)).toBe(true);
    await z.close();
    const got = await vl.io.load(file);
    await expectTensors(got, expected('views.pth'));
    disposeAll(got);
  });

  test('hand-made checkpoints: a tensor past its storage, unsupported storages, byte order', async () => {
    const ok = write('hand.pth', checkpointZip(checkpointPickle([
      { name: 'w', storage: 'FloatStorage', key: '0', numel: 4, offset: 1, size: [3], stride: [1] },
    ]), { 0: floats(1, 2, 3, 4) }));
    const got = await vl.io.loadPth(ok);
    expect(Array.from(await got.get('w')!.data())).toEqual([2, 3, 4]);
    disposeAll(got);

    const past = write('past.pth', checkpointZip(checkpointPickle([
      { name: 'blocks.0.w', storage: 'FloatStorage', key: '0', numel: 4, offset: 2, size: [2, 2], stride: [1, 2] },
    ]), { 0: floats(1, 2, 3, 4) }));
    await formatError(vl.io.loadPth(past), past, /tensor 'blocks.0.w' \(size \[2, 2\], stride \[1, 2\], offset 2\) reaches element 5 of storage '0', which has 4 elements/);

    const short = write('short.pth', checkpointZip(checkpointPickle([
      { name: 'w', storage: 'FloatStorage', key: '0', numel: 4, offset: 0, size: [4], stride: [1] },
    ]), { 0: floats(1, 2, 3) }));
    await formatError(vl.io.loadPth(short), short, /storage '0' holds 4 f32 elements \(16 bytes\) but ck\/data\/0 has 12 bytes/);

    const missing = write('missing.pth', checkpointZip(checkpointPickle([
      { name: 'w', storage: 'FloatStorage', key: '7', numel: 1, offset: 0, size: [1], stride: [1] },
    ]), {}));
    await formatError(vl.io.loadPth(missing), missing, /storage '7' of tensor 'w' has no entry ck\/data\/7/);

    const double = write('double.pth', checkpointZip(checkpointPickle([
      { name: 'w', storage: 'DoubleStorage', key: '0', numel: 2, offset: 0, size: [2], stride: [1] },
    ]), { 0: Buffer.alloc(16) }));
    const err = await vl.io.loadPth(double).catch((e) => e);
    expect(err).toBeInstanceOf(vl.DTypeError);
    expect(err.message).toMatch(/tensor 'w' is stored as torch.DoubleStorage; supported storages: FloatStorage \(f32\)/);
    // Only a tensor that uses it is an error: the structure alone reads fine.
    expect((await vl.io.readPthInfo(double)).tensors).toBe(1);

    const big = write('big.pth', checkpointZip(checkpointPickle([
      { name: 'w', storage: 'FloatStorage', key: '0', numel: 1, offset: 0, size: [1], stride: [1] },
    ]), { 0: floats(1) }, [{ name: 'ck/byteorder', data: Buffer.from('big') }]));
    await formatError(vl.io.loadPth(big), big, /saved big-endian/);
  });

  test('corrupt archives give a FormatError naming the file and the problem', async () => {
    const good = fs.readFileSync(path.join(pthDir, 'views.pth'));
    const cd = good.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    const cdOffset = good.readUInt32LE(cd + 16);
    const flipped = (at: number, ...bytes: number[]) => {
      const b = Buffer.from(good);
      bytes.forEach((v, i) => { b[at + i] = v; });
      return b;
    };
    // The central directory record of the storage 'views/data/0'.
    const dataEntry = good.indexOf(Buffer.from('views/data/0'), cdOffset) - 46;
    expect(good.readUInt32LE(dataEntry)).toBe(0x02014b50);
    const lying = Buffer.from(good);
    lying.writeUInt32LE(0x7fffffff, dataEntry + 20);
    lying.writeUInt32LE(0x7fffffff, dataEntry + 24);
    const sizesDisagree = Buffer.from(good);
    sizesDisagree.writeUInt32LE(good.readUInt32LE(dataEntry + 24) + 4, dataEntry + 24);
    const countsDisagree = Buffer.from(good);
    countsDisagree.writeUInt16LE(60000, cd + 8);
    countsDisagree.writeUInt16LE(60000, cd + 10);
    const pklStart = 30 + good.readUInt16LE(26) + good.readUInt16LE(28);
    // torch writes a ZIP64 end record (and its locator) even for small archives.
    const rec = good.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06]));
    expect(rec).toBeGreaterThan(cdOffset);
    const dirTooBig = Buffer.from(good);
    dirTooBig.writeBigUInt64LE(BigInt(good.length), rec + 40);
    dirTooBig.writeUInt32LE(0xffffffff, cd + 12);
    const tooMany = Buffer.from(good);
    tooMany.writeBigUInt64LE(60000n, rec + 24);
    tooMany.writeBigUInt64LE(60000n, rec + 32);
    tooMany.writeUInt16LE(0xffff, cd + 10);

    const cases: [string, Buffer, RegExp][] = [
      ['truncated', good.subarray(0, good.length - 100), /no end-of-central-directory record/],
      ['truncated data', Buffer.concat([good.subarray(0, 1000), good.subarray(cdOffset)]), /no ZIP64 end record signature at byte \d+/],
      ['directory size lies', dirTooBig, /the central directory \(1311 bytes at byte \d+\) runs past the end record at byte \d+/],
      ['wrong local magic', flipped(0, 0x50, 0x4b, 0x09, 0x09), /no local header signature at byte 0/],
      ['wrong central magic', flipped(cdOffset, 0x50, 0x4b, 0x09, 0x09), /no central directory signature for entry 0/],
      ['lying size', lying, /entry 'views\/data\/0': its 2147483647 bytes at byte \d+ run past the start of the central directory/],
      ['sizes disagree', sizesDisagree, /entry 'views\/data\/0' is stored but claims \d+ bytes in the file and \d+ uncompressed/],
      ['too many entries', tooMany, /60000 entries cannot fit in a central directory of \d+ bytes/],
      ['counts disagree', countsDisagree, /the end record says 60000 for the entry count, its ZIP64 record 4/],
      ['pickle byte flipped', flipped(pklStart + 2, 0xff), /entry 'views\/data.pkl' has CRC-32 0x[0-9a-f]+ but the directory declares/],
      ['empty', Buffer.alloc(0), /fewer than an end-of-central-directory record/],
    ];
    for (const [name, data, message] of cases) {
      const file = write(`${name.replace(/ /g, '_')}.pth`, data);
      await formatError(vl.io.loadPth(file), file, message);
    }
    // Through io.load, whose choice of reader goes by the magic.
    const notZip = write('not-a-checkpoint.pth', Buffer.from('GIF89a, certainly no checkpoint'));
    await formatError(vl.io.load(notZip), notZip, /not a checkpoint format this package reads; supported: safetensors .* PyTorch zip/);
    const legacy = write('legacy.pth', fs.readFileSync(path.join(pthDir, 'values.p2.pkl')));
    await formatError(vl.io.load(legacy), legacy, /a plain pickle \(a legacy torch.save file/);
    await formatError(vl.io.loadPth(legacy), legacy, /no end-of-central-directory record/);
  });

  test('a bad pickle opcode inside a checkpoint names the opcode, its offset and the file', async () => {
    const entries = await zipEntries(path.join(pthDir, 'views.pth'));
    const pkl = entries[0];
    expect(pkl.name).toBe('views/data.pkl');
    const bad = Buffer.from(pkl.data);
    bad[2] = 0x69; // INST, a protocol 0 way to call a class that this reader refuses
    const file = write('bad-opcode.pth', makeZip([{ ...pkl, data: bad }, ...entries.slice(1)]));
    await formatError(vl.io.loadPth(file), file, /views\/data.pkl\): unsupported pickle opcode 0x69 \('INST'\) at byte 2/);
  });
});

describe('pickle interpreter', () => {
  const want = new Map<unknown, unknown>([
    ['none', null], ['true', true], ['false', false],
    ['ints', [0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31 - 1, 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1]],
    ['big', [2n ** 53n, -(2n ** 53n), 2n ** 64n + 5n, -(2n ** 100n)]],
    ['floats', [0, -1.5, 1e300, Math.PI, Infinity, -Infinity]],
    ['strings', ['', 'plain', 'quote\'s "and" \\ back\nslash', 'ünïcödé ✓ 𝄞', 'x'.repeat(300)]],
    ['bytes', new Uint8Array([0, 1, 254, 255])],
    ['bytearray', new Uint8Array([97, 98, 99])],
    ['tuples', [[], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4]]],
    ['set', new Set([1, 2, 3])], ['frozenset', new Set(['x'])],
    ['ordered', new Map([['z', 1], ['y', 2]])],
    ['slice', { start: 1, stop: 10, step: 2 }],
  ]);

  test.each([0, 1, 2, 3, 4, 5])('protocol %i', (proto) => {
    const v = unpickle(fs.readFileSync(path.join(pthDir, `values.p${proto}.pkl`))) as Map<unknown, unknown>;
    expect(v).toBeInstanceOf(Map);
    for (const [k, w] of want) expect([k, v.get(k)]).toEqual([k, w]);
    const nested = v.get('nested') as Map<unknown, unknown>;
    expect(nested.get('a')).toEqual([1, new Map([['b', [2, [3]]]])]);
    expect(nested.get(7)).toBe('int key');
    expect([...nested.keys()][2]).toEqual([1, 2]);
    const ns = v.get('namespace') as PyRecord;
    expect(ns.__class__).toBe('argparse.Namespace');
    expect(ns.state).toEqual(new Map<string, unknown>([['lr', 0.1], ['name', 'n']]));
    // Subclasses of dict and list: records of their class, holding their items.
    const dictsub = v.get('dictsub') as PyRecord;
    expect(dictsub.__class__).toBe('__main__.ConfigDict');
    expect(dictsub.items).toEqual(new Map<string, unknown>([['a', 1], ['b', [2]]]));
    const listsub = v.get('listsub') as PyRecord;
    expect(listsub.__class__).toBe('__main__.Tags');
    expect(listsub.list).toEqual([1, 2]);
    const shared = v.get('shared') as unknown[];
    expect(shared[0]).toBe(shared[1]); // memo: one object, as in Python
  });

  test('malformed pickles are FormatErrors, never crashes or hangs', () => {
    const cases: [number[], RegExp][] = [
      [[0x80, 2, 0x4e], /the data ends without STOP/],
      [[0x80, 2, 0x4a, 1, 2], /needs 4 bytes at byte 3 but the data has 2 left/],
      [[0x80, 2, 0xff], /unsupported pickle opcode 0xff \('not a pickle opcode'\) at byte 2/],
      [[0x80, 2, 0x82, 1, 0x2e], /unsupported pickle opcode 0x82 \('EXT1'\) at byte 2/],
      [[0x80, 2, 0x28, 0x4e, 0x2e], /1 MARK\(s\) left open/],
      [[0x80, 2, 0x4e, 0x74, 0x2e], /no MARK to pop to \(TUPLE at byte 3\)/],
      [[0x80, 2, 0x68, 9, 0x2e], /memo key 9 was never stored/],
      [[0x80, 2, 0x2e], /the stack is empty \(STOP at byte 2\)/],
      [[0x80, 2, 0x4e, 0x4e, 0x73, 0x2e], /the stack is empty/],
      [[0x80, 2, 0x4e, 0x4e, 0x4e, 0x73, 0x2e], /SETITEM on None, not a dict/],
      [[0x80, 2, 0x5d, 0x5d, 0x4e, 0x73, 0x2e], /SETITEM on a sequence of 0, not a dict/],
      [[0x80, 2, 0x7d, 0x5d, 0x4e, 0x73, 0x2e], /unhashable dict key a sequence of 0/],
      [[0x80, 9, 0x2e], /protocol 9 is newer than 5/],
      [[0x80, 4, 0x95, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x2e], /a frame runs past the end/],
      [[0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f, 0x2e], /an integer of 2147483647 bytes/],
      [[0x80, 2, 0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x2e], /beyond|a length of/],
      [[0x80, 2, 0x51, 0x2e], /the stack is empty/],
      [[0x80, 2, 0x4e, 0x51, 0x2e], /a persistent id, but no loader for them/],
    ];
    for (const [bytes, message] of cases) {
      const run = () => unpickle(Buffer.from(bytes), { source: 'test.pkl' });
      expect(run).toThrow(vl.FormatError);
      expect(run).toThrow(message);
      expect(run).toThrow(/^test.pkl: /);
    }
    // Bounds on the stack and memo.
    const many = Buffer.concat([op(0x80, 2, 0x28), Buffer.alloc(100, 0x4e), op(0x74, 0x2e)]);
    expect(() => unpickle(many, { maxStack: 50 })).toThrow(/the stack exceeds 50 items/);
    const memo = Buffer.concat([op(0x80, 4, 0x4e), Buffer.alloc(100, 0x94), op(0x2e)]);
    expect(() => unpickle(memo, { maxMemo: 50 })).toThrow(/the memo exceeds 50 entries/);
    expect(unpickle(memo)).toBeNull();
  });

  test('unlisted callables become inert records; BUILD sets their state', () => {
    const pkl = Buffer.concat([
      op(0x80, 2), global('subprocess', 'Popen'), tuple(str('rm -rf /')), op(0x52),
      op(0x7d), str('shell'), op(0x88, 0x73, 0x62, 0x2e),
    ]);
    const r = unpickle(pkl) as PyRecord;
    expect(r).toBeInstanceOf(PyRecord);
    expect(r.__class__).toBe('subprocess.Popen');
    expect(r.args).toEqual(['rm -rf /']);
    expect(r.state).toEqual(new Map([['shell', true]]));
    // torch.device and torch.Size are plain data.
    const dev = Buffer.concat([op(0x80, 2), global('torch', 'device'), tuple(str('cuda'), int(1)), op(0x52, 0x2e)]);
    expect(unpickle(dev)).toBe('cuda:1');
    const size = Buffer.concat([op(0x80, 2), global('torch', 'Size'), tuple(tuple(int(2), int(3))), op(0x52, 0x2e)]);
    expect(unpickle(size)).toEqual([2, 3]);
  });
});

describe('visionllama convert', () => {
  const cli = (...args: string[]) => runNode(`require(${JSON.stringify(require.resolve('./register-ts.js'))});
    process.argv = ['node', 'visionllama', ...${JSON.stringify(args)}];
    require(${JSON.stringify(path.join(repoRoot, 'lib', 'cli', 'main.ts'))});`);

  test('converts a checkpoint to safetensors, with --key and --dtype', async () => {
    const out = path.join(dir, 'dit-ema.safetensors');
    const r = cli('convert', path.join(pthDir, 'dit.pth'), out, '--key', 'ema', '--dtype', 'bf16');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/wrote 12 tensors \([\d.]+ kB\) to .*dit-ema.safetensors/);
    const header = await vl.io.readSafetensorsHeader(out);
    expect(header.metadata).toEqual({ format: 'pt', source: 'dit.pth', key: 'ema' });
    const got = await vl.io.load(out);
    const want = expected('dit.pth@ema');
    expect([...got.keys()]).toEqual([...want.keys()]);
    for (const [k, t] of want) {
      const u = got.get(k)!;
      if (t.dtype === 'f32') {
        expect(u.dtype).toBe('bf16');
        using c = t.to('bf16');
        expect(await same(u, c)).toBe(true);
      } else {
        expect(await same(u, t)).toBe(true);
      }
    }
    disposeAll(got);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  test('reports bad arguments and bad checkpoints', () => {
    const out = path.join(dir, 'never.safetensors');
    const usage = cli('convert', path.join(pthDir, 'dit.pth'));
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/expected an input and an output file[\s\S]*usage: visionllama convert IN.pth OUT.safetensors/);
    const badKey = cli('convert', path.join(pthDir, 'dit.pth'), out, '--key', 'teacher', '--dtype', 'f64');
    expect(badKey.status).toBe(2);
    expect(badKey.stderr).toMatch(/--dtype must be one of f32, bf16, f16, not 'f64'/);
    const corrupt = write('corrupt.pth', fs.readFileSync(path.join(pthDir, 'dit.pth')).subarray(0, 3000));
    const r = cli('convert', corrupt, out, '--key', 'teacher');
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`visionllama: ${corrupt}: not a valid zip archive: no end-of-central-directory record (wrong magic, or a truncated file)\n`);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('an unknown key fails before anything is written', async () => {
    const out = path.join(dir, 'never2.safetensors');
    await expect(convertCheckpoint(path.join(pthDir, 'deit.pth'), out, { key: 'teacher' }))
      .rejects.toThrow(/no top-level key 'teacher'; the checkpoint has 'model', 'optimizer', 'lr_scheduler', 'epoch', 'args'/);
    expect(fs.existsSync(out)).toBe(false);
    await expect(convertCheckpoint(path.join(pthDir, 'deit.pth'), path.join(dir, 'x.pth'))).rejects.toThrow(/only safetensors is written/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});
