// The train and demo commands, run as a user would (child processes).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { runNode } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-train-cli-'));
const register = require.resolve('./register-ts.js');
const main = require.resolve('../lib/cli/main.ts');

function cli(...args: string[]) {
  return runNode(`require(${JSON.stringify(register)}); process.argv = ['node', 'visionllama', ...${JSON.stringify(args)}]; require(${JSON.stringify(main)});`);
}

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('visionllama demo', () => {
  test('trains on Fashion-MNIST, reports the test accuracy, writes weights, metrics and curves, then predicts', async () => {
    const out = path.join(dir, 'demo');
    const r = cli('demo', '--epochs', '2', '--limit-train', '2048', '--limit-test', '512', '--batch', '64', '--out', out, '--workers', '1');
    expect(r.stderr).not.toMatch(/visionllama: /);
    expect(r.status).toBe(0);
    const m = /^test accuracy: (0\.\d{4}|1\.0000)$/m.exec(r.stdout);
    expect(m).not.toBeNull();
    // Two short epochs on 2048 images: well above chance (0.1) already.
    expect(Number(m![1])).toBeGreaterThan(0.5);
    for (const f of ['model.safetensors', 'model.json', 'labels.txt', 'metrics.jsonl', 'curves.png', 'checkpoint/checkpoint.json']) {
      expect(fs.existsSync(path.join(out, f))).toBe(true);
    }
    const meta = await sharp(path.join(out, 'curves.png')).metadata();
    expect(meta.format).toBe('png');
    const metrics = vl.train.readMetrics(path.join(out, 'metrics.jsonl'));
    expect(metrics.filter((x) => x.split === 'test').map((x) => x.epoch)).toEqual([1, 2]);
    expect(metrics.filter((x) => x.split === 'train').length).toBe(2 * 32);
    // predict ran on the sample images with the saved files and printed class names.
    expect(r.stdout).toMatch(/visionllama predict --model .*model\.json/);
    expect(r.stdout).toMatch(/samples[\\/]test-0-Ankle_boot\.png\n\s+\d+\.\d+%\s+(T-shirt\/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot)/);
    // The saved model loads and reproduces the reported accuracy's inputs through the public API.
    using model = await vl.models.loadModel(path.join(out, 'model.json'), path.join(out, 'model.safetensors'));
    expect(model.config).toMatchObject({ arch: 'plain', inChans: 1, numClasses: 10 });
  });
});

describe('visionllama train', () => {
  test('an image-folder dataset: trains, then --resume continues from the checkpoint', async () => {
    const data = path.join(dir, 'folders');
    // Two classes told apart by colour, PNG and JPEG files of different sizes.
    for (const split of ['train', 'val']) {
      for (const [cls, rgb] of [['red', { r: 220, g: 30, b: 30 }], ['blue', { r: 30, g: 30, b: 220 }]] as const) {
        fs.mkdirSync(path.join(data, split, cls), { recursive: true });
        for (let i = 0; i < (split === 'train' ? 8 : 4); ++i) {
          const img = sharp({ create: { width: 40 + i, height: 36, channels: 3, background: rgb } });
          await (i % 2 ? img.jpeg() : img.png()).toFile(path.join(data, split, cls, `${i}.${i % 2 ? 'jpg' : 'png'}`));
        }
      }
    }
    const model = path.join(dir, 'tiny.json');
    fs.writeFileSync(model, JSON.stringify({ arch: 'plain', dim: 32, depth: 1, heads: 2, patchSize: 8 }));
    const out = path.join(dir, 'run');
    const common = ['--model', model, '--data', data, '--batch', '4', '--image-size', '32', '--out', out, '--workers', '1', '--lr', '3e-3'];
    const first = cli('train', ...common, '--epochs', '1');
    expect(first.stderr).not.toMatch(/visionllama: /);
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/epoch 1: train loss \d/);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8')).classes).toEqual(['blue', 'red']);
    const second = cli('train', ...common, '--epochs', '2', '--resume');
    expect(second.status).toBe(0);
    expect(second.stdout).not.toMatch(/epoch 1:/);
    expect(second.stdout).toMatch(/epoch 2: train loss/);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'checkpoint', 'checkpoint.json'), 'utf8'))).toMatchObject({ epoch: 2, step: 8 });
  });

  test('--device: training (and resuming) on another device gives the losses of the CPU run', () => {
    const data = path.join(dir, 'folders');  // written by the test above
    const model = path.join(dir, 'tiny.json');
    // A second CPU device (VLLAMA_CPU_DEVICES) takes the paths a GPU would: batches go to the model's device.
    const run = (device: string, out: string, ...more: string[]) => runNode(`require(${JSON.stringify(register)});
      process.argv = ['node', 'visionllama', 'train', ...${JSON.stringify(['--model', model, '--data', data, '--batch', '4', '--image-size', '32',
        '--workers', '1', '--lr', '3e-3', '--ema', '0.9', '--no-progress', '--out', out, '--device', device, ...more])}];
      require(${JSON.stringify(main)});`, { VLLAMA_CPU_DEVICES: '2' });
    const losses = (out: string) => fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
    const here = path.join(dir, 'on-cpu'), there = path.join(dir, 'on-cpu1');
    for (const [device, out] of [['cpu', here], ['cpu:1', there]]) {
      const first = run(device, out, '--epochs', '1');
      expect({ device, stderr: first.stderr, status: first.status }).toEqual({ device, stderr: '', status: 0 });
      const second = run(device, out, '--epochs', '2', '--resume');
      expect({ device, stderr: second.stderr, status: second.status }).toEqual({ device, stderr: '', status: 0 });
    }
    expect(losses(there).length).toBeGreaterThan(8);
    expect(losses(there)).toEqual(losses(here));
    const bad = cli('train', '--model', model, '--data', data, '--device', 'cuda:9');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/cuda/);
  });

  test('--loss-scale: a starting scale is saved with the checkpoint; off leaves f16 unscaled', () => {
    const data = path.join(dir, 'folders');  // written by the test above
    const model = path.join(dir, 'tiny.json');
    const base = ['--model', model, '--data', data, '--batch', '4', '--image-size', '32', '--workers', '1', '--epochs', '1'];
    const scaled = path.join(dir, 'scaled');
    const a = cli('train', ...base, '--out', scaled, '--precision', 'bf16', '--loss-scale', '1024');
    expect(a.stderr).not.toMatch(/visionllama: /);
    expect(a.status).toBe(0);
    // Four steps with finite gradients: the scale neither grew (interval 2000) nor backed off.
    const state = JSON.parse(fs.readFileSync(path.join(scaled, 'checkpoint', 'checkpoint.json'), 'utf8'));
    expect(JSON.stringify(state)).toMatch(/"gradScaler":\{"scale":1024,/);
    const plain = path.join(dir, 'unscaled');
    const b = cli('train', ...base, '--out', plain, '--precision', 'f16', '--loss-scale', 'off');
    expect(b.status).toBe(0);
    expect(fs.readFileSync(path.join(plain, 'checkpoint', 'checkpoint.json'), 'utf8')).not.toMatch(/gradScaler/);
  });

  test('bad arguments say what is expected', () => {
    expect(cli('train', '--model', 'plain-s').stderr).toMatch(/--data is required/);
    expect(cli('train', '--model', 'plain-s', '--data', 'fashion-mnist', '--opt', 'adam').stderr).toMatch(/--opt must be adamw, lamb or sgd, got 'adam'/);
    expect(cli('train', '--model', 'plain-s', '--data', 'fashion-mnist', '--precision', 'fp16').stderr).toMatch(/--precision must be f32, bf16, f16, got 'fp16'/);
    expect(cli('train', '--model', 'plain-s', '--data', 'fashion-mnist', '--loss-scale', '0').stderr).toMatch(/--loss-scale must be auto, off, dynamic or a positive starting scale, got '0'/);
    expect(cli('train', '--model', 'plain-s', '--data', path.join(dir, 'nowhere')).stderr).toMatch(/--data must be 'fashion-mnist' or a folder with train\/ and val\//);
    expect(cli('train', '--model', 'plain-s', '--data', 'fashion-mnist', '--epochs', '0').stderr).toMatch(/--epochs must be an integer >= 1/);
  });
});
