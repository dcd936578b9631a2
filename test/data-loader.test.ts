// The DataLoader: seeded epochs, batches built in worker threads (the same for any worker count), resume, prefetch, errors, shutdown.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { ImageFolder } from '../lib/data/image-folder';
import { Batch, DataLoader, DataLoaderOptions } from '../lib/data/loader';
import { ArraysSpec, TransformSpec } from '../lib/data/spec';
import { runNode } from './helpers';

const N = 103;
const H = 4;
const W = 5;
/** Image i's pixel k is (37 i + k) % 256; its label is i % 7. */
const dataset: ArraysSpec = {
  kind: 'arrays',
  images: Uint8Array.from({ length: N * H * W }, (_, j) => (Math.floor(j / (H * W)) * 37 + (j % (H * W))) % 256),
  labels: Uint8Array.from({ length: N }, (_, i) => i % 7),
  height: H,
  width: W,
};
const evalT: TransformSpec = { kind: 'gray-eval', mean: 0.5, std: 0.25 };
const trainT: TransformSpec = { kind: 'gray-train', mean: 0.5, std: 0.25, pad: 1 };

const loaders: DataLoader[] = [];
function loader(options: Partial<DataLoaderOptions>): DataLoader {
  const l = new DataLoader({ dataset, transform: evalT, batchSize: 10, seed: 7, workers: 2, ...options });
  loaders.push(l);
  return l;
}
afterAll(() => Promise.all(loaders.map((l) => l.close())));

async function collect(l: DataLoader, epoch: number, startBatch?: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of l.epoch(epoch, { startBatch })) out.push(b);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DataLoader', () => {
  const shared = loader({});

  test('every sample exactly once per epoch; labels and images belong to the indices', async () => {
    expect([shared.numSamples, shared.numBatches, shared.numClasses, shared.sampleShape]).toEqual([N, 11, 7, [1, H, W]]);
    const batches = await collect(shared, 0);
    expect(batches.map((b) => b.shape)).toEqual([...new Array(10).fill([10, 1, H, W]), [3, 1, H, W]]);
    expect(batches.map((b) => b.batch)).toEqual(Array.from({ length: 11 }, (_, i) => i));
    const seen = batches.flatMap((b) => Array.from(b.indices));
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(Int32Array.from(seen)).toEqual(shared.order(0));
    for (const b of batches) {
      expect(b.epoch).toBe(0);
      expect(Array.from(b.labels)).toEqual(Array.from(b.indices, (i) => i % 7));
      b.indices.forEach((idx, row) => {
        const px = Float32Array.from({ length: H * W }, (_, k) => (((idx * 37 + k) % 256) / 255 - 0.5) / 0.25);
        expect(b.images.subarray(row * H * W, (row + 1) * H * W)).toEqual(px);
      });
    }
    const dropped = await collect(loader({ dropLast: true, workers: 0 }), 0);
    expect(dropped.map((b) => b.shape[0])).toEqual(new Array(10).fill(10));
    expect(new Set(dropped.flatMap((b) => Array.from(b.indices))).size).toBe(100);
  });

  test('the order differs between epochs and is reproducible per seed', () => {
    const again = loader({ workers: 0 });
    expect(shared.order(1)).not.toEqual(shared.order(0));
    expect(again.order(1)).toEqual(shared.order(1));
    expect(loader({ workers: 0, seed: 8 }).order(1)).not.toEqual(shared.order(1));
    expect(loader({ workers: 0, shuffle: false }).order(5)).toEqual(Int32Array.from({ length: N }, (_, i) => i));
  });

  test('identical batches with 2, 1 and 0 workers (augmentation and mixup included)', async () => {
    const options = { transform: trainT, mixup: { mixupAlpha: 0.8, cutmixAlpha: 1, labelSmoothing: 0.1 } };
    const runs = await Promise.all([2, 1, 0].map((workers) => collect(loader({ ...options, workers }), 3)));
    for (const run of runs.slice(1)) {
      expect(run.length).toBe(runs[0].length);
      run.forEach((b, i) => {
        expect(b.indices).toEqual(runs[0][i].indices);
        expect(b.images).toEqual(runs[0][i].images);
        expect(b.targets).toEqual(runs[0][i].targets);
      });
    }
    const first = runs[0][0];
    expect(first.targets!.length).toBe(10 * 7);
    // Augmented: not the plain normalized images, and another epoch augments differently.
    const plain = (await collect(shared, 3))[0];
    expect(plain.indices).toEqual(first.indices);
    expect(first.images).not.toEqual(plain.images);
    const other = (await collect(loader({ ...options, workers: 0, shuffle: false }), 4))[0];
    const same = (await collect(loader({ ...options, workers: 0, shuffle: false }), 4))[0];
    expect(other.images).toEqual(same.images);
  });

  test('resume: starting at a batch gives the rest of the epoch', async () => {
    const full = await collect(shared, 2);
    const rest = await collect(shared, 2, 4);
    expect(rest.map((b) => b.batch)).toEqual([4, 5, 6, 7, 8, 9, 10]);
    rest.forEach((b, i) => {
      expect(b.indices).toEqual(full[i + 4].indices);
      expect(b.images).toEqual(full[i + 4].images);
    });
    expect(await collect(shared, 2, 11)).toEqual([]);
    await expect(collect(shared, 2, 12)).rejects.toThrow(/startBatch must be an integer in \[0, 11\], got 12/);
  });

  test('bad options fail when the loader is made', () => {
    expect(() => loader({ batchSize: 0 })).toThrow(/batchSize must be an integer >= 1/);
    expect(() => loader({ transform: { kind: 'rgb-train', size: 8 } })).toThrow(/does not apply to grayscale arrays/);
    expect(() => loader({ transform: { kind: 'gray-train', mean: 0, std: 0 } })).toThrow(/std > 0/);
    expect(() => loader({ dataset: { ...dataset, labels: [1, 2] } })).toThrow(/not 2 labelled 4x5 images/);
    expect(() => loader({ mixup: { prob: 2 } })).toThrow(/prob must be in \[0, 1\]/);
  });
});

describe('DataLoader with image files', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-loader-'));
  const files: string[] = [];

  beforeAll(async () => {
    // Large noisy JPEGs, so that decoding a batch takes a while.
    let seed = 1;
    const raw = Buffer.alloc(1200 * 1200 * 3);
    for (let i = 0; i < raw.length; ++i) raw[i] = (seed = (Math.imul(seed, 1103515245) + 12345) | 0) >>> 24;
    const jpeg = await sharp(raw, { raw: { width: 1200, height: 1200, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    for (let i = 0; i < 10; ++i) {
      const file = path.join(root, `c${i % 3}`, `img${String(i).padStart(2, '0')}.jpg`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, jpeg);
      files.push(file);
    }
  });

  test('prefetch: a slow consumer gets every batch after the first without waiting for decoding', async () => {
    const folder = new ImageFolder(root);
    const options = { dataset: folder, transform: { kind: 'rgb-train', size: 224, scale: [0.5, 1] } as TransformSpec, batchSize: 2 };
    // How long one batch takes to build in this thread (a lower bound on what waiting for it would cost).
    const t0 = performance.now();
    await loader({ ...options, workers: 0 }).epoch(0).next();
    const build = performance.now() - t0;
    expect(build).toBeGreaterThan(30);
    
    // Whether a batch was ready is read from the event loop, not a clock (a loaded machine stretches
    // any time bound): a batch already built resolves next() within microtasks, before a
    // setImmediate callback queued at the same moment; one still decoding needs a worker message,
    // which comes after it.
    const l = loader({ ...options, workers: 2, prefetch: 4 });
    const ready: boolean[] = [];
    const it = l.epoch(0);
    for (;;) {
      const pending = it.next();
      const immediate = new Promise<boolean>((resolve) => setImmediate(() => resolve(false)));
      ready.push(await Promise.race([pending.then(() => true), immediate]));
      const r = await pending;
      if (r.done) break;
      await sleep(Math.max(200, 3 * build)); // the consumer's own work: long enough for two workers to build the next one
    }
    expect(ready.length).toBe(6);
    expect(ready[0]).toBe(false); // the first batch is waited for
    expect(ready.slice(1)).toEqual([true, true, true, true, true]);
    await l.close();
  });

  test('an unreadable image surfaces as an error naming the sample and the file (workers and in-thread)', async () => {
    const broken = files[7];
    fs.writeFileSync(broken, Buffer.from('this is not a JPEG'));
    const folder = new ImageFolder(root);
    const index = folder.samples.findIndex((s) => s.path === broken);
    for (const workers of [1, 0]) {
      const l = loader({ dataset: folder, transform: { kind: 'rgb-eval', resize: 64, crop: 32 }, batchSize: 3, shuffle: false, workers });
      const got: number[] = [];
      const err = await (async () => {
        for await (const b of l.epoch(0)) got.push(b.batch);
      })().catch((e) => e);
      expect(err).toBeInstanceOf(vl.FormatError);
      expect(err.message).toContain(`sample ${index}: ${broken}: not a readable image`);
      expect(got).toEqual(Array.from({ length: Math.floor(index / 3) }, (_, i) => i));
    }
  });

  test('a worker that dies fails the pending batches instead of hanging', async () => {
    const l = loader({ dataset: new ImageFolder(root), transform: { kind: 'rgb-train', size: 64 }, batchSize: 2, workers: 1 });
    const it = l.epoch(0);
    const first = it.next();
    await sleep(50);
    // As if the thread crashed (the pool's only worker, already busy with batch 0).
    await (l as unknown as { pool: { slots: { worker: { terminate(): Promise<number> } }[] } }).pool.slots[0].worker.terminate();
    await expect(first).rejects.toThrow(/DataLoader worker 0 exited unexpectedly \(code \d+\)/);
    await expect(l.epoch(1).next()).rejects.toThrow(/exited unexpectedly/);
  });

  test('breaking off an epoch drops its batches that no worker has started', async () => {
    const l = loader({ dataset: new ImageFolder(root), transform: { kind: 'rgb-eval', resize: 64, crop: 32 }, batchSize: 1, workers: 1, prefetch: 6 });
    const pool = (l as unknown as { pool: { queue: unknown[] } }).pool;
    for await (const b of l.epoch(0)) {
      expect(b.batch).toBe(0);
      expect(pool.queue.length).toBeGreaterThan(0);
      break;
    }
    expect(pool.queue.length).toBe(0);
    expect((await l.epoch(1).next()).value!.batch).toBe(0);
  });

  test('close() ends the workers, rejects later use', async () => {
    const l = loader({ transform: evalT, workers: 2 });
    expect(l.activeWorkers).toBe(0); // started on demand
    await collect(l, 0);
    expect(l.activeWorkers).toBe(2);
    await l.close();
    expect(l.activeWorkers).toBe(0);
    await expect(l.epoch(1).next()).rejects.toThrow(/used after close\(\)/);
  });

  test('a process that never calls close() still exits when done, also after breaking off an epoch', () => {
    const r = runNode(`
      require(${JSON.stringify(require.resolve('./register-ts.js'))});
      const { DataLoader } = require(${JSON.stringify(require.resolve('../lib/data/loader.ts'))});
      const images = new Uint8Array(50 * 16).fill(9);
      const l = new DataLoader({ dataset: { kind: 'arrays', images, labels: new Uint8Array(50), height: 4, width: 4 },
        transform: { kind: 'gray-train', mean: 0, std: 1 }, batchSize: 4, workers: 2 });
      (async () => {
        let n = 0;
        for await (const b of l.epoch(0)) n += b.shape[0];
        for await (const b of l.epoch(1)) break;
        console.log('done', n, l.activeWorkers);
      })();
    `);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('done 50 2');
    expect(r.status).toBe(0);
  });
});
