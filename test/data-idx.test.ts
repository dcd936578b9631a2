// IDX files (raw and gzipped, and every way they can be corrupt) and the Fashion-MNIST loader with each of its sources.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import * as vl from '../lib';
import { parseIdx, readIdx, readIdxSync } from '../lib/data/idx';
import {
  FASHION_MNIST_BUNDLED_DIR, FASHION_MNIST_CLASSES, FASHION_MNIST_SYSTEM_DIR, loadFashionMnist, loadFashionMnistSync,
} from '../lib/data/fashion-mnist';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-idx-'));

function idx(type: number, shape: number[], data: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * shape.length);
  head[2] = type;
  head[3] = shape.length;
  shape.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}

function write(name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

const pixels = Array.from({ length: 24 }, (_, i) => i * 10);
const images = idx(0x08, [2, 3, 4], pixels);

describe('IDX', () => {
  test('reads images and labels, raw and gzipped, async and sync', async () => {
    const raw = write('images-idx3-ubyte', images);
    const gz = write('images-idx3-ubyte.gz', zlib.gzipSync(images));
    for (const r of [await readIdx(raw), await readIdx(gz), readIdxSync(raw), readIdxSync(gz)]) {
      expect(r.shape).toEqual([2, 3, 4]);
      expect(r.data).toBeInstanceOf(Uint8Array);
      expect(Array.from(r.data)).toEqual(pixels);
    }
    expect(images.readUInt32BE(0)).toBe(0x00000803);
    const labels = parseIdx(idx(0x08, [5], [1, 2, 3, 4, 9]));
    expect(labels.shape).toEqual([5]);
    expect(Array.from(labels.data)).toEqual([1, 2, 3, 4, 9]);
  });

  const corrupt: [string, () => Uint8Array, RegExp][] = [
    ['bad magic', () => Buffer.concat([Buffer.from([0x12, 0x34]), images.subarray(2)]), /bad magic number 0x12340803/],
    ['unsupported type', () => idx(0x0d, [2], [0, 0, 0, 0, 0, 0, 0, 0]), /element type code 0x0d \(f32\) is not supported/],
    ['unknown type', () => idx(0x42, [1], [0]), /element type code 0x42 \(unknown\)/],
    ['no dimensions', () => Buffer.from([0, 0, 8, 0]), /declares no dimensions/],
    ['too short for the magic', () => Buffer.from([0, 0]), /2 bytes, too short for the 4-byte magic/],
    ['truncated header', () => images.subarray(0, 10), /truncated header: 3 dimensions need 16 bytes, the file has 10/],
    ['truncated data', () => images.subarray(0, images.length - 5), /truncated: shape \[2, 3, 4\] needs 24 data bytes, the file has 19/],
    ['extra data', () => Buffer.concat([images, Buffer.from([1, 2])]), /needs 24 data bytes, the file has 26 \(2 extra\)/],
    ['a dimension that does not match', () => { const b = Buffer.from(images); b.writeUInt32BE(3, 4); return b; }, /shape \[3, 3, 4\] needs 36 data bytes, the file has 24/],
  ];

  test.each(corrupt)('%s: FormatError naming the file and the problem', async (name, make, message) => {
    const bytes = make();
    for (const [file, read] of [[write(`${name}.idx`, bytes), readIdx], [write(`${name}.idx.gz`, zlib.gzipSync(bytes)), readIdx]] as const) {
      const err = await read(file).catch((e) => e);
      expect(err).toBeInstanceOf(vl.FormatError);
      expect(err.message).toContain(file);
      expect(err.message).toMatch(message);
      expect(() => readIdxSync(file)).toThrow(message);
    }
  });

  test('bad gzip: truncated or with flipped bytes', async () => {
    const gz = zlib.gzipSync(idx(0x08, [1000], Array.from({ length: 1000 }, (_, i) => (i * 7919) % 251)));
    const truncated = write('truncated.gz', gz.subarray(0, gz.length - 20));
    const flipped = Buffer.from(gz);
    for (let i = 12; i < 40; ++i) flipped[i] ^= 0xff;
    const damaged = write('damaged.gz', flipped);
    for (const file of [truncated, damaged]) {
      const err = await readIdx(file).catch((e) => e);
      expect(err).toBeInstanceOf(vl.FormatError);
      expect(err.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not a valid gzip file \\(`));
      expect(() => readIdxSync(file)).toThrow(/not a valid gzip file/);
    }
  });
});

describe('Fashion-MNIST', () => {
  const haveSystem = fs.existsSync(path.join(FASHION_MNIST_SYSTEM_DIR, 'train-images-idx3-ubyte.gz'));

  test('the shipped copy: no file over 20 MiB, training images in two 30000-image parts', () => {
    const files = fs.readdirSync(FASHION_MNIST_BUNDLED_DIR);
    expect(files).toEqual(expect.arrayContaining([
      'README.md', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz',
      'train-images-idx3-ubyte.part1.gz', 'train-images-idx3-ubyte.part2.gz', 'train-labels-idx1-ubyte.gz',
    ]));
    for (const f of files) expect(fs.statSync(path.join(FASHION_MNIST_BUNDLED_DIR, f)).size).toBeLessThan(20 * 1024 * 1024);
    for (const part of [1, 2]) {
      const gz = fs.readFileSync(path.join(FASHION_MNIST_BUNDLED_DIR, `train-images-idx3-ubyte.part${part}.gz`));
      const head = zlib.gunzipSync(gz.subarray(0, 4096), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, 16); // just the header
      expect([0, 4, 8, 12].map((o) => head.readUInt32BE(o))).toEqual([0x803, 30000, 28, 28]);
    }
  });

  (haveSystem ? test : test.skip)('the shipped copy decodes to exactly the Debian files, both splits', async () => {
    for (const [split, count] of [['train', 60000], ['test', 10000]] as const) {
      const system = await loadFashionMnist(split, { root: FASHION_MNIST_SYSTEM_DIR });
      const shipped = await loadFashionMnist(split, { root: FASHION_MNIST_BUNDLED_DIR });
      expect(system.source).toBe(FASHION_MNIST_SYSTEM_DIR);
      expect(shipped.source).toBe(FASHION_MNIST_BUNDLED_DIR);
      for (const fm of [system, shipped]) {
        expect([fm.count, fm.height, fm.width, fm.split]).toEqual([count, 28, 28, split]);
        expect(fm.images.length).toBe(count * 784);
        expect(fm.labels.length).toBe(count);
        expect(fm.classes).toEqual(FASHION_MNIST_CLASSES);
      }
      expect(Buffer.from(shipped.images).equals(Buffer.from(system.images))).toBe(true);
      expect(Buffer.from(shipped.labels).equals(Buffer.from(system.labels))).toBe(true);
    }
  });

  test('default source: the Debian directory when installed, else the shipped copy', async () => {
    const fm = await loadFashionMnist('test');
    expect(fm.source).toBe(haveSystem ? FASHION_MNIST_SYSTEM_DIR : FASHION_MNIST_BUNDLED_DIR);
    // As if dataset-fashion-mnist were not installed.
    const realFs: typeof fs = require('fs');
    const exists = realFs.existsSync;
    const spy = jest.spyOn(realFs, 'existsSync').mockImplementation((p) => !String(p).startsWith(FASHION_MNIST_SYSTEM_DIR) && exists(p));
    try {
      const fallback = loadFashionMnistSync('test');
      expect(fallback.source).toBe(FASHION_MNIST_BUNDLED_DIR);
      expect(Buffer.from(fallback.images).equals(Buffer.from(fm.images))).toBe(true);
    } finally {
      spy.mockRestore();
    }
    // The first test images: an ankle boot, a pullover, two trousers, a shirt.
    expect(Array.from(fm.labels.subarray(0, 5))).toEqual([9, 2, 1, 1, 6]);
    expect(FASHION_MNIST_CLASSES[9]).toBe('Ankle boot');
  });

  test('options.root: uncompressed files there; no fallback when they are missing', async () => {
    const root = fs.mkdtempSync(path.join(dir, 'fm-'));
    for (const f of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) {
      fs.writeFileSync(path.join(root, f), zlib.gunzipSync(fs.readFileSync(path.join(FASHION_MNIST_BUNDLED_DIR, `${f}.gz`))));
    }
    const fm = await loadFashionMnist('test', { root });
    const shipped = loadFashionMnistSync('test', { root: FASHION_MNIST_BUNDLED_DIR });
    expect(fm.source).toBe(root);
    expect(Buffer.from(fm.images).equals(Buffer.from(shipped.images))).toBe(true);
    await expect(loadFashionMnist('train', { root })).rejects.toThrow(`${root} has no Fashion-MNIST train files (train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz])`);
    await expect(loadFashionMnist('valid' as 'train')).rejects.toBeInstanceOf(vl.ArgumentError);
  });

  test('images and labels that do not belong together are errors naming the files', async () => {
    const root = fs.mkdtempSync(path.join(dir, 'fm-bad-'));
    fs.writeFileSync(path.join(root, 't10k-images-idx3-ubyte'), idx(0x08, [2, 28, 28], new Array(2 * 784).fill(0)));
    fs.writeFileSync(path.join(root, 't10k-labels-idx1-ubyte'), idx(0x08, [3], [0, 1, 2]));
    await expect(loadFashionMnist('test', { root })).rejects.toThrow(/t10k-labels-idx1-ubyte: shape \[3\] does not label the 2 images/);
    fs.writeFileSync(path.join(root, 't10k-labels-idx1-ubyte'), idx(0x08, [2], [0, 12]));
    await expect(loadFashionMnist('test', { root })).rejects.toThrow(/label 12 at index 1 is not one of the 10 classes/);
    fs.writeFileSync(path.join(root, 't10k-images-idx3-ubyte'), idx(0x08, [2, 27, 29], new Array(2 * 27 * 29).fill(0)));
    await expect(loadFashionMnist('test', { root })).rejects.toThrow(/t10k-images-idx3-ubyte: shape \[2, 27, 29\] is not Fashion-MNIST images/);
  });
});
