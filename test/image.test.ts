// Image decoding and the evaluation transform; .npy round trips.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { decodeImage, jpegDecoder, loadImageBatch, IMAGENET_MEAN, IMAGENET_STD } from '../lib/data/image';
import { decodePixels, decodeWithSharp } from '../lib/data/decode';
import { native } from '../lib/native';

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

describe('resampling (Pillow bicubic, as torchvision resizes a PIL image)', () => {
  type Case = { width: number; height: number; channels: number; resize: [number, number]; crop: [number, number, number, number]; src: string; expected: string };
  const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'pil_resize.json'), 'utf8')) as { cases: Case[] };
  const resample = (...args: unknown[]): Promise<Float32Array> => (native() as any).resampleImage(...args);

  test.each(fixture.cases.map((c) => [`${c.width}x${c.height}x${c.channels} -> ${c.resize.join('x')}, crop ${c.crop.join(',')}`, c] as [string, Case]))(
    '%s: every byte as Pillow computes it', async (_name, c) => {
      const src = new Uint8Array(Buffer.from(c.src, 'base64'));
      const want = new Uint8Array(Buffer.from(c.expected, 'base64'));
      const [left, top, cw, ch] = c.crop;
      const ones = new Array(c.channels).fill(1), zeros = new Array(c.channels).fill(0);
      const got = await resample(src, c.width, c.height, c.channels, c.resize[0], c.resize[1], left, top, cw, ch, zeros, ones);
      expect(got.length).toBe(c.channels * cw * ch);
      let mismatches = 0;
      for (let y = 0; y < ch; ++y) {
        for (let x = 0; x < cw; ++x) {
          for (let k = 0; k < c.channels; ++k) {
            const v = got[k * cw * ch + y * cw + x] * 255;
            if (Math.abs(v - want[(y * cw + x) * c.channels + k]) > 1e-3) mismatches += 1;
          }
        }
      }
      expect(mismatches).toBe(0);
    });

  test('normalization is (v/255 - mean)/std in f32, channels first', async () => {
    const src = new Uint8Array([0, 128, 255, 10, 20, 30]);  // 2x1 RGB
    const mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225];
    const got = await resample(src, 2, 1, 3, 2, 1, 0, 0, 2, 1, mean, std);
    const f = Math.fround;
    const want = [0, 10, 128, 20, 255, 30].map((v, i) => f(f(f(v) / 255) - f(mean[i >> 1])) / f(std[i >> 1]));
    want.forEach((w, i) => expect(got[i]).toBeCloseTo(f(w), 6));
  });

  test('bad arguments are errors that say what was expected', () => {
    const px = new Uint8Array(12);
    expect(() => resample(px, 2, 2, 3, 2, 2, 0, 0, 2, 2, [0, 0, 0], [1, 1, 1])).not.toThrow();
    expect(() => resample(new Float32Array(12), 2, 2, 3, 2, 2, 0, 0, 2, 2, [0, 0, 0], [1, 1, 1])).toThrow(/pixels must be a Uint8Array/);
    expect(() => resample(px, 2, 2, 2, 2, 2, 0, 0, 2, 2, [0, 0], [1, 1])).toThrow(/a 2x2x2 image has 8 bytes, got 12/);
    expect(() => resample(px, 2, 2, 3, 2, 2, 1, 0, 2, 2, [0, 0, 0], [1, 1, 1])).toThrow(/crop 2x2 at \(1, 0\) must lie inside the 2x2 resized image/);
    expect(() => resample(px, 2, 2, 3, 2, 2, 0, 0, 2, 2, [0, 0], [1, 1, 1])).toThrow(/mean must be an array of one number per channel/);
    expect(() => resample(px, 2, 2, 3, 2, 2, 0, 0, 2, 2, [0, 0, 0], [1, 0, 1])).toThrow(/std finite and > 0/);
    expect(() => resample(px, 2, 2, 3, -1, 2, 0, 0, 2, 2, [0, 0, 0], [1, 1, 1])).toThrow(/resizeWidth must be an integer from 0/);
    expect(() => resample(px, 2, 2, 5, 2, 2, 0, 0, 2, 2, [0, 0, 0], [1, 1, 1])).toThrow(/1 to 4/);
  });
});

describe('JPEG decoding with the system libjpeg-turbo', () => {
  // Where the library is missing, sharp decodes every image and these cases cannot run.
  const withLib = jpegDecoder() ? test : test.skip;
  const decodeJpeg = (b: Uint8Array) => (native() as unknown as { decodeJpeg(b: Uint8Array, max: number): Promise<{ data: Uint8Array; width: number; height: number } | null> }).decodeJpeg(b, 1 << 28);

  /** A noisy w×h photo-like RGB image, encoded by sharp with `options`. */
  type Pipeline = ReturnType<typeof sharp>;
  type JpegOptions = Parameters<Pipeline['jpeg']>[0];
  async function photo(w: number, h: number, options: JpegOptions, edit = (s: Pipeline) => s): Promise<Buffer> {
    const raw = Buffer.alloc(w * h * 3);
    let seed = w * 7919 + h;
    for (let i = 0; i < raw.length; ++i) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const x = (i / 3) % w, y = Math.floor(i / 3 / w);
      raw[i] = Math.min(255, ((i % 3 === 0 ? x : i % 3 === 1 ? y : x + y) * 255) / (w + h) + (seed >>> 26));
    }
    return edit(sharp(raw, { raw: { width: w, height: h, channels: 3 } })).jpeg(options).toBuffer();
  }

  withLib('the same pixels as sharp: 4:2:0, 4:4:4, progressive, odd sizes, mozjpeg scans', async () => {
    const cases: [number, number, JpegOptions][] = [
      [320, 240, { quality: 90 }], [37, 23, { quality: 75 }], [64, 48, { quality: 95, chromaSubsampling: '4:4:4' }],
      [101, 67, { quality: 85, progressive: true }], [50, 81, { quality: 80, mozjpeg: true }], [1, 1, { quality: 50 }],
    ];
    for (const [w, h, o] of cases) {
      const jpg = await photo(w, h, o);
      const ours = await decodeJpeg(jpg);
      expect(ours).not.toBeNull();
      const ref = await decodeWithSharp(jpg, jpg, 3);
      expect([ours!.width, ours!.height]).toEqual([w, h]);
      expect(Buffer.from(ours!.data).equals(Buffer.from(ref.data))).toBe(true);
    }
  });

  withLib('rotated, grayscale, ICC-tagged, damaged and non-JPEG inputs are left to sharp, with the same result', async () => {
    const rotated = await photo(40, 30, { quality: 90 }, (s) => s.withMetadata({ orientation: 6 }));
    const gray = await photo(40, 30, { quality: 90 }, (s) => s.greyscale().toColourspace('b-w'));
    const icc = await photo(40, 30, { quality: 90 }, (s) => s.withIccProfile('p3'));
    const good = await photo(40, 30, { quality: 90 });
    const truncated = good.subarray(0, good.length - 200);
    const png = await sharp(Buffer.alloc(12), { raw: { width: 2, height: 2, channels: 3 } }).png().toBuffer();
    for (const b of [rotated, gray, icc, truncated, png, Buffer.from([0xff, 0xd8, 0xff, 0x00])]) expect(await decodeJpeg(b)).toBeNull();
    // decodeImage takes sharp's path for them: EXIF rotation applied (40x30 stored, 30x40 shown).
    const r = await decodePixels(rotated, 3);
    expect([r.width, r.height]).toEqual([30, 40]);
    for (const b of [gray, icc]) expect(Buffer.from((await decodePixels(b, 3)).data).equals(Buffer.from((await decodeWithSharp(b, b, 3)).data))).toBe(true);
    await expect(decodeImage(Buffer.from([0xff, 0xd8, 0xff, 0x00]))).rejects.toThrow(/<4-byte buffer>: not a readable image/);
  });

  withLib('a JPEG file and its bytes give the same transformed image as sharp decoding', async () => {
    const jpg = await photo(300, 200, { quality: 92 });
    const file = path.join(dir, 'photo.jpg');
    fs.writeFileSync(file, jpg);
    const [a, b] = [await decodeImage(file), await decodeImage(jpg)];
    expect(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength))).toBe(true);
    // The pixels sharp decodes, through the same resample: identical floats.
    const ref = await decodeWithSharp(jpg, jpg, 3);
    const resampled = await (native() as unknown as { resampleImage(...a: unknown[]): Promise<Float32Array> })
      .resampleImage(ref.data, 300, 200, 3, 384, 256, 80, 16, 224, 224, [...IMAGENET_MEAN], [...IMAGENET_STD]);
    expect(Buffer.from(resampled.buffer, resampled.byteOffset, resampled.byteLength).equals(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength))).toBe(true);
    await expect(decodeImage(path.join(dir, 'missing.jpg'))).rejects.toThrow(/missing\.jpg: not a readable image/);
  });

  test('decodeJpeg checks its arguments', () => {
    const n = native() as unknown as { decodeJpeg(b: unknown, max: unknown): Promise<unknown> };
    expect(() => n.decodeJpeg(new Float32Array(4), 10)).toThrow(/decodeJpeg: expected the file's bytes as a Uint8Array/);
    expect(() => n.decodeJpeg(new Uint8Array(4), 0)).toThrow(/maxPixels must be positive/);
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
