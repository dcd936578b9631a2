// Training transforms (RandomResizedCrop + flip for RGB files; pad-crop + flip for grayscale arrays) and mixup/CutMix.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { decodeImage, IMAGENET_MEAN, IMAGENET_STD } from '../lib/data/decode';
import { mixBatch, MixupOptions } from '../lib/data/mixup';
import { Rng } from '../lib/data/rng';
import { augmentGray, decodeTrainImage, normalizeGray, randomResizedCropBox } from '../lib/data/transforms';
import { DataLoader } from '../lib/data/loader';
import { ImageFolder } from '../lib/data/image-folder';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-tf-'));

/** A w×h RGB PNG whose red grows from 0 to 255 left to right, green top to bottom, blue = 255 - red. */
async function gradient(w: number, h: number, file: string): Promise<string> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; ++y) {
    for (let x = 0; x < w; ++x) {
      const r = Math.round((x * 255) / (w - 1));
      raw.set([r, Math.round((y * 255) / (h - 1)), 255 - r], (y * w + x) * 3);
    }
  }
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
  return file;
}

describe('RandomResizedCrop', () => {
  test('boxes stay in the image, with area and aspect ratio in range', () => {
    const rng = new Rng(1);
    const bad: unknown[] = [];
    const areas: number[] = [];
    for (let t = 0; t < 2000; ++t) {
      const [h, w] = [200 + (t % 7) * 30, 300 - (t % 5) * 40];
      const b = randomResizedCropBox(h, w, rng);
      const area = (b.height * b.width) / (h * w);
      areas.push(area);
      // Rounding the sides moves area and ratio a little past the ranges.
      const ok = b.top >= 0 && b.left >= 0 && b.height >= 1 && b.width >= 1 && b.top + b.height <= h && b.left + b.width <= w
        && area > 0.07 && b.width / b.height > 0.74 && b.width / b.height < 1.35;
      if (!ok) bad.push({ h, w, ...b });
    }
    expect(bad).toEqual([]);
    expect(Math.min(...areas)).toBeLessThan(0.1);
    expect(Math.max(...areas)).toBeGreaterThan(0.9);
  });

  test('no fitting box in 10 tries: the central crop clamped to the ratio range', () => {
    expect(randomResizedCropBox(10, 1000, new Rng(2), [1, 1])).toEqual({ top: 0, left: 493, height: 10, width: 13 });
    expect(randomResizedCropBox(1000, 10, new Rng(2), [1, 1])).toEqual({ top: 493, left: 0, height: 13, width: 10 });
    expect(randomResizedCropBox(50, 50, new Rng(2), [1, 1], [2, 3])).toEqual({ top: 12, left: 0, height: 25, width: 50 });
  });

  test('decoded crops: shape, value range, reproducible, flip is an exact mirror', async () => {
    const file = await gradient(320, 240, path.join(dir, 'g.png'));
    const t = { size: 64 };
    const a = await decodeTrainImage(file, t, new Rng(5, 0));
    expect(a.length).toBe(3 * 64 * 64);
    for (let c = 0; c < 3; ++c) {
      const plane = a.subarray(c * 4096, (c + 1) * 4096);
      expect(Math.min(...plane)).toBeGreaterThanOrEqual(-IMAGENET_MEAN[c] / IMAGENET_STD[c] - 1e-5);
      expect(Math.max(...plane)).toBeLessThanOrEqual((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] + 1e-5);
    }
    expect(await decodeTrainImage(file, t, new Rng(5, 0))).toEqual(a);
    expect(await decodeTrainImage(file, t, new Rng(5, 1))).not.toEqual(a);
    // The crop is drawn before the flip, so the same stream gives the same crop, mirrored or not.
    const kept = await decodeTrainImage(file, { ...t, flip: 0 }, new Rng(9));
    const flipped = await decodeTrainImage(file, { ...t, flip: 1 }, new Rng(9));
    const mirrored = kept.map((_, i) => kept[i - (i % 64) + 63 - (i % 64)]);
    expect(flipped).toEqual(mirrored);
    expect(flipped).not.toEqual(kept);
    // Red grows with x in the image: left to right unless mirrored.
    expect(kept[10 * 64 + 60]).toBeGreaterThan(kept[10 * 64 + 3]);
  });

  test('the crop holds the chosen region: whole-image crop = resized image', async () => {
    const file = await gradient(300, 200, path.join(dir, 'w.png'));
    const out = await decodeTrainImage(file, { size: 50, scale: [1, 1], ratio: [1.5, 1.5], flip: 0 }, new Rng(0));
    const red = (x: number) => out[25 * 50 + x] * IMAGENET_STD[0] + IMAGENET_MEAN[0];
    const green = (y: number) => out[2500 + y * 50 + 25] * IMAGENET_STD[1] + IMAGENET_MEAN[1];
    for (const v of [red(0), green(0)]) expect(v * 255).toBeLessThan(4);
    for (const v of [red(49), green(49)]) expect(v * 255).toBeGreaterThan(251);
    expect(red(25) * 255).toBeCloseTo(255 / 2, -1);
  });

  test('an unreadable file is a FormatError naming it', async () => {
    const bad = path.join(dir, 'bad.png');
    fs.writeFileSync(bad, 'no image here');
    const err = await decodeTrainImage(bad, { size: 8 }, new Rng(0)).catch((e) => e);
    expect(err).toBeInstanceOf(vl.FormatError);
    expect(err.message).toContain(bad);
  });

  test('the evaluation path is decodeImage, unchanged (through a loader too)', async () => {
    const root = path.join(dir, 'folder');
    fs.mkdirSync(path.join(root, 'a'), { recursive: true });
    const file = await gradient(320, 240, path.join(root, 'a', 'g.png'));
    const direct = await decodeImage(file, { resize: 72, crop: 64 });
    const loader = new DataLoader({ dataset: new ImageFolder(root), transform: { kind: 'rgb-eval', resize: 72, crop: 64 }, batchSize: 1, workers: 0 });
    for await (const b of loader.epoch(0)) expect(b.images).toEqual(direct.data);
    // Red of the crop's first column: 320x240 -> 96x72, crop left 16; that pixel's center maps back to x = 16.5 * 320/96 - 0.5.
    expect([direct.height, direct.width]).toEqual([64, 64]);
    expect(direct.data[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).toBeCloseTo(((16.5 * 320) / 96 - 0.5) / 319, 2);
  });
});

describe('grayscale transforms', () => {
  const H = 6;
  const W = 5;
  const image = Uint8Array.from({ length: H * W }, (_, i) => 10 + i * 8);
  const norm = { mean: 0.3, std: 0.5 };
  const value = (v: number) => (v / 255 - norm.mean) / norm.std;

  test('normalize; no padding and no flip leave the image as it is', () => {
    const n = normalizeGray(image, norm);
    expect(n.length).toBe(H * W);
    expect(n[7]).toBeCloseTo(value(image[7]), 6);
    expect(augmentGray(image, H, W, { ...norm, pad: 0, flip: 0 }, new Rng(1))).toEqual(n);
  });

  test('flip is an exact mirror', () => {
    const f = augmentGray(image, H, W, { ...norm, pad: 0, flip: 1 }, new Rng(1));
    const mirror = Float32Array.from({ length: H * W }, (_, i) => value(image[i - (i % W) + W - 1 - (i % W)]));
    expect(f).toEqual(mirror);
  });

  test('pad-and-crop is a shift within the padding, zeros coming in; reproducible per stream', () => {
    const pad = 2;
    const seen = new Set<string>();
    for (let s = 0; s < 200; ++s) {
      const out = augmentGray(image, H, W, { ...norm, pad, flip: 0.5 }, new Rng(3, s));
      expect(augmentGray(image, H, W, { ...norm, pad, flip: 0.5 }, new Rng(3, s))).toEqual(out);
      const match = [];
      for (const flip of [false, true]) for (let dy = -pad; dy <= pad; ++dy) for (let dx = -pad; dx <= pad; ++dx) {
        let ok = true;
        for (let y = 0; y < H && ok; ++y) for (let x = 0; x < W && ok; ++x) {
          const sy = y + dy;
          const sx = (flip ? W - 1 - x : x) + dx;
          const want = sy >= 0 && sy < H && sx >= 0 && sx < W ? value(image[sy * W + sx]) : value(0);
          ok = Math.abs(out[y * W + x] - want) < 1e-6;
        }
        if (ok) match.push(`${flip} ${dy} ${dx}`);
      }
      expect(match).toHaveLength(1);
      seen.add(match[0]);
    }
    expect(seen.size).toBeGreaterThan(40); // of the 50 shifts and flips
  });
});

describe('mixup / CutMix', () => {
  const [B, C, H, W, K] = [6, 3, 8, 10, 5];
  const sample = C * H * W;
  // Image b is filled with b + 1 (so each pixel tells where it came from), labels 0, 1, 2, ...
  const images = Float32Array.from({ length: B * sample }, (_, i) => Math.floor(i / sample) + 1);
  const labels = Int32Array.from({ length: B }, (_, i) => i % K);
  const mix = (o: Partial<MixupOptions>, seed: number, inPlace = false) =>
    mixBatch(inPlace ? new Float32Array(images) : images, [B, C, H, W], labels, { numClasses: K, ...o }, new Rng(seed), inPlace);

  function expectTargets(targets: Float32Array, lam: Float32Array, smoothing: number): void {
    for (let i = 0; i < B; ++i) {
      const row = Array.from(targets.subarray(i * K, (i + 1) * K));
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      const want = new Array(K).fill(smoothing / K);
      want[labels[i]] += lam[i] * (1 - smoothing);
      want[labels[B - 1 - i]] += (1 - lam[i]) * (1 - smoothing);
      row.forEach((v, k) => expect(v).toBeCloseTo(want[k], 5));
    }
  }

  test('mixup: every row is lam * itself + (1 - lam) * its partner in the reversed batch', () => {
    for (let seed = 0; seed < 20; ++seed) {
      const m = mix({ mixupAlpha: 0.8, labelSmoothing: 0.1 }, seed);
      const lam = m.lam[0];
      expect(lam).toBeGreaterThanOrEqual(0);
      expect(lam).toBeLessThanOrEqual(1);
      expect(m.lam.every((l) => l === lam)).toBe(true);
      expect(m.cutmix.every((c) => !c)).toBe(true);
      for (let i = 0; i < B; ++i) expect(m.images[i * sample + 17]).toBeCloseTo(lam * (i + 1) + (1 - lam) * (B - i), 4);
      expectTargets(m.targets, m.lam, 0.1);
    }
    expect(images[0]).toBe(1); // the input is left alone unless in place
  });

  test('CutMix: a box from the partner, lam corrected to the pasted area', () => {
    const lams: number[] = [];
    for (let seed = 0; seed < 30; ++seed) {
      const m = mix({ mixupAlpha: 0, cutmixAlpha: 1, labelSmoothing: 0 }, seed, seed % 2 === 0);
      expect(m.cutmix.every(Boolean)).toBe(true);
      for (let i = 0; i < B; ++i) {
        const row = Array.from(m.images.subarray(i * sample, (i + 1) * sample));
        expect(row.every((v) => v === i + 1 || v === B - i)).toBe(true);
        expect(row.filter((v) => v === i + 1).length / sample).toBeCloseTo(m.lam[i], 6);
      }
      lams.push(m.lam[0]);
      expectTargets(m.targets, m.lam, 0);
    }
    expect(lams.every((l) => l >= 0 && l <= 1)).toBe(true);
    expect(new Set(lams).size).toBeGreaterThan(10);
  });

  test('both enabled: switch probability picks CutMix or mixup per batch', () => {
    const kinds = Array.from({ length: 200 }, (_, s) => mix({ mixupAlpha: 0.8, cutmixAlpha: 1, switchProb: 0.25 }, s).cutmix[0]);
    const share = kinds.filter(Boolean).length / kinds.length;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.35);
  });

  test('label smoothing alone (prob 0): images unchanged, targets smoothed one-hot', () => {
    const m = mix({ prob: 0, labelSmoothing: 0.2 }, 1);
    expect(m.images).toEqual(images);
    expect(Array.from(m.lam)).toEqual(new Array(B).fill(1));
    expect(m.targets[0]).toBeCloseTo(1 - 0.2 + 0.2 / K, 6);
    expect(m.targets[1]).toBeCloseTo(0.2 / K, 6);
    expectTargets(m.targets, m.lam, 0.2);
  });

  test("'elem' draws a lambda per image, 'pair' one per partner pair; cutmixMinMax boxes", () => {
    const e = mix({ mode: 'elem', mixupAlpha: 1 }, 3);
    expect(new Set(e.lam).size).toBeGreaterThan(3);
    expectTargets(e.targets, e.lam, 0.1);
    for (let i = 0; i < B; ++i) expect(e.images[i * sample]).toBeCloseTo(e.lam[i] * (i + 1) + (1 - e.lam[i]) * (B - i), 4);
    const p = mix({ mode: 'pair', mixupAlpha: 0, cutmixAlpha: 1 }, 4);
    for (let i = 0; i < B; ++i) expect(p.lam[i]).toBe(p.lam[B - 1 - i]);
    expectTargets(p.targets, p.lam, 0.1);
    const mm = mix({ cutmixMinMax: [0.2, 0.5], mixupAlpha: 0 }, 5);
    const side = 1 - mm.lam[0];
    expect(side).toBeGreaterThanOrEqual(0.2 * 0.2 * 0.9);
    expect(side).toBeLessThanOrEqual(0.5 * 0.5);
    expect(() => mixBatch(images.subarray(0, 5 * sample), [5, C, H, W], labels.subarray(0, 5), { numClasses: K, mode: 'pair' }, new Rng(0)))
      .toThrow(/mode 'pair' needs an even batch size/);
  });

  test('bad arguments', () => {
    expect(() => mix({ labelSmoothing: 1 }, 0)).toThrow(vl.ArgumentError);
    expect(() => mixBatch(images, [B, C, H, W], labels, { numClasses: 3 }, new Rng(0))).toThrow(/label 3 \(row 3\) is not in \[0, 3\)/);
    expect(() => mixBatch(images, [B, C, H, 9], labels, { numClasses: K }, new Rng(0))).toThrow(/do not have shape/);
  });
});
