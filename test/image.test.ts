// Image decoding and the evaluation transform; .npy round trips.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { decodeImage, loadImageBatch, IMAGENET_MEAN, IMAGENET_STD } from '../lib/data/image';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-img-'));

/** A w×h RGB image whose pixel (x, y) is (x, y, (x + y) % 256), written as `format`. */
async function gradient(w: number, h: number, format: 'png' | 'jpeg' | 'webp'): Promise<string> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; ++y) for (let x = 0; x < w; ++x) raw.set([x % 256, y % 256, (x + y) % 256], (y * w + x) * 3);
  const file = path.join(dir, `g${w}x${h}.${format}`);
  const img = sharp(raw, { raw: { width: w, height: h, channels: 3 } });
  await (format === 'png' ? img.png() : format === 'jpeg' ? img.jpeg({ quality: 100 }) : img.webp({ lossless: true })).toFile(file);
  return file;
}

describe('image transform', () => {
  test('without resize/crop, values are (x/255 - mean)/std in CHW order', async () => {
    const file = await gradient(5, 3, 'png');
    const { data, height, width } = await decodeImage(file, { resize: 0, crop: 0 });
    expect([height, width]).toEqual([3, 5]);
    for (const [c, x, y, v] of [[0, 4, 2, 4], [1, 4, 2, 2], [2, 3, 1, 4]]) {
      expect(data[c * 15 + y * 5 + x]).toBeCloseTo((v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], 5);
    }
  });

  test.each(['png', 'jpeg', 'webp'] as const)('%s: shorter side to 256, center 224 crop', async (format) => {
    const file = await gradient(320, 240, format);
    const { data, height, width } = await decodeImage(file);
    expect([height, width]).toEqual([224, 224]);
    expect(data.length).toBe(3 * 224 * 224);
    // 320x240 -> 341x256 (torchvision truncates), crop left = round(117/2) = 58 (half to even), top = 16.
    // Red grows with x: the crop's first column is near x = 58 * 320/341.
    const red0 = data[112 * 224] * IMAGENET_STD[0] + IMAGENET_MEAN[0];
    expect(red0 * 255).toBeGreaterThan(52);
    expect(red0 * 255).toBeLessThan(58);
  });

  test('a batch keeps going past unreadable images and reports them by name', async () => {
    const good = await gradient(256, 256, 'png');
    const bad = path.join(dir, 'broken.jpg');
    fs.writeFileSync(bad, Buffer.from('not an image at all'));
    const missing = path.join(dir, 'missing.png');
    const batch = await loadImageBatch([good, bad, missing, good]);
    expect(batch.images!.shape).toEqual([2, 3, 224, 224]);
    expect(batch.ok).toEqual([good, good]);
    expect(batch.failed.map((f) => f.input)).toEqual([bad, missing]);
    for (const f of batch.failed) {
      expect(f.error).toBeInstanceOf(vl.FormatError);
      expect(f.error.message).toContain(f.input as string);
    }
    batch.images!.dispose();
  });

  test('crop larger than the image is an error that says so', async () => {
    const file = await gradient(100, 80, 'png');
    await expect(decodeImage(file, { resize: 0, crop: 224 })).rejects.toThrow(/a 224x224 crop does not fit the 100x80 image/);
  });
});

describe('npy', () => {
  test('round trip and errors', async () => {
    const file = path.join(dir, 'x.npy');
    using t = vl.randn([2, 3, 5], { seed: 1 });
    await vl.io.saveNpy(file, t);
    const bytes = fs.readFileSync(file);
    expect(bytes.readUInt16LE(8) + 10).toBe(128); // 64-aligned data start
    using back = await vl.io.loadNpy(file);
    expect(back.shape).toEqual([2, 3, 5]);
    expect(Buffer.from(await back.bytes()).equals(Buffer.from(await t.bytes()))).toBe(true);
    const f64 = path.join(dir, 'f64.npy');
    fs.writeFileSync(f64, Buffer.concat([bytes.subarray(0, 10), Buffer.from(bytes.subarray(10, 128).toString('latin1').replace('<f4', '<f8')), Buffer.alloc(240)]));
    await expect(vl.io.loadNpy(f64)).rejects.toThrow(/holds '<f8' data; expected little-endian float32/);
    const short = path.join(dir, 'short.npy');
    fs.writeFileSync(short, bytes.subarray(0, bytes.length - 4));
    await expect(vl.io.loadNpy(short)).rejects.toThrow(/needs 120 data bytes, the file has 116/);
    fs.writeFileSync(short, Buffer.from('hello'));
    await expect(vl.io.loadNpy(short)).rejects.toBeInstanceOf(vl.FormatError);
  });
});
