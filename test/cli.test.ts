// The forward and predict commands, run as a user would (child processes).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { maxAbsDiff, runNode } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-cli-'));
const fixtures = path.join(__dirname, 'fixtures', 'models');
const register = require.resolve('./register-ts.js');
const main = require.resolve('../lib/cli/main.ts');

function cli(...args: string[]) {
  return runNode(`require(${JSON.stringify(register)}); process.argv = ['node', 'visionllama', ...${JSON.stringify(args)}]; require(${JSON.stringify(main)});`);
}

describe('visionllama forward', () => {
  test('logits of a .npy batch match the reference', async () => {
    const cases = await vl.io.loadSafetensors(path.join(fixtures, 'plain-tiny.case.safetensors'), { names: ['input.1', 'logits.1'] });
    const input = path.join(dir, 'x.npy');
    const output = path.join(dir, 'y.npy');
    await vl.io.saveNpy(input, cases.get('input.1')!);
    const r = cli('forward', '--model', path.join(fixtures, 'plain-tiny.json'), '--weights', path.join(fixtures, 'plain-tiny.weights.pth'), '--input', input, '--output', output);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    using y = await vl.io.loadNpy(output);
    expect(y.shape).toEqual([1, 10]);
    const want = await cases.get('logits.1')!.data();
    expect(maxAbsDiff(await y.data(), want)).toBeLessThan(1e-4);
    // --dtype f16: fp16 weights and operands, within fp16 rounding of the reference.
    const half = cli('forward', '--model', path.join(fixtures, 'plain-tiny.json'), '--weights', path.join(fixtures, 'plain-tiny.weights.pth'),
      '--input', input, '--output', output, '--dtype', 'f16');
    expect([half.stderr, half.status]).toEqual(['', 0]);
    using yh = await vl.io.loadNpy(output);
    const dh = maxAbsDiff(await yh.data(), want);
    expect(dh).toBeGreaterThan(0);
    expect(dh).toBeLessThan(5e-3 * Math.max(...Array.from(want, Math.abs)));
    for (const t of cases.values()) t.dispose();
  });

  test('bad arguments say what is expected', () => {
    const missing = cli('forward', '--model', 'plain-s');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/--input is required/);
    const unknown = cli('forward', '--modle', 'x');
    expect(unknown.stderr).toMatch(/unknown option --modle; expected --model/);
    const preset = cli('forward', '--model', 'plain-xl', '--input', 'a.npy', '--output', 'b.npy');
    expect(preset.stderr).toMatch(/unknown model 'plain-xl': expected one of plain-s, plain-b/);
  });

  test('--device runs the model on another device: the same logits; devices that are not here are errors', async () => {
    const cases = await vl.io.loadSafetensors(path.join(fixtures, 'pyramid-tiny.case.safetensors'), { names: ['input.0'] });
    const input = path.join(dir, 'xd.npy');
    await vl.io.saveNpy(input, cases.get('input.0')!);
    for (const t of cases.values()) t.dispose();
    const args = (device: string, output: string) => ['forward', '--model', path.join(fixtures, 'pyramid-tiny.json'),
      '--weights', path.join(fixtures, 'pyramid-tiny.weights.safetensors'), '--input', input, '--output', output, '--device', device];
    // A second CPU device (VLLAMA_CPU_DEVICES) takes the paths a GPU would: model, input and logits cross devices.
    const two = (a: string[]) => runNode(`require(${JSON.stringify(register)}); process.argv = ['node', 'visionllama', ...${JSON.stringify(a)}]; require(${JSON.stringify(main)});`, { VLLAMA_CPU_DEVICES: '2' });
    const here = two(args('cpu', path.join(dir, 'y0.npy')));
    const there = two(args('cpu:1', path.join(dir, 'y1.npy')));
    expect([here.stderr, here.status, there.stderr, there.status]).toEqual(['', 0, '', 0]);
    using y0 = await vl.io.loadNpy(path.join(dir, 'y0.npy'));
    using y1 = await vl.io.loadNpy(path.join(dir, 'y1.npy'));
    expect(Buffer.from(await y1.bytes()).equals(Buffer.from(await y0.bytes()))).toBe(true);
    const absent = cli(...args('cpu:1', path.join(dir, 'y2.npy')));
    expect(absent.status).toBe(1);
    expect(absent.stderr).toMatch(/cpu:1/);
    const bad = cli(...args('gpu', path.join(dir, 'y2.npy')));
    expect(bad.stderr).toMatch(/--device must be cpu, cuda or cuda:N, got 'gpu'/);
    if (!vl.backends().includes('cuda')) {
      const noGpu = cli(...args('cuda', path.join(dir, 'y2.npy')));
      expect(noGpu.status).toBe(1);
      expect(noGpu.stderr).toMatch(/device cuda:0 is not available/);
    }
    expect(fs.existsSync(path.join(dir, 'y2.npy'))).toBe(false);
  });
});

describe('visionllama predict', () => {
  test('top-5 of images with labels; an unreadable image is reported and the rest still run', async () => {
    const files: string[] = [];
    for (const [i, color] of [[0, { r: 250, g: 10, b: 10 }], [1, { r: 10, g: 10, b: 250 }]] as const) {
      const f = path.join(dir, `img${i}.${i ? 'webp' : 'jpg'}`);
      await sharp({ create: { width: 40, height: 50, channels: 3, background: color } }).toFile(f);
      files.push(f);
    }
    const broken = path.join(dir, 'broken.png');
    fs.writeFileSync(broken, 'definitely not a png');
    const labels = path.join(dir, 'labels.txt');
    fs.writeFileSync(labels, Array.from({ length: 10 }, (_, i) => `class ${i}`).join('\n'));
    const r = cli('predict', '--model', path.join(fixtures, 'plain-tiny.json'), '--weights', path.join(fixtures, 'plain-tiny.weights.safetensors'),
      '--labels', labels, '--json', '--resize', '32', '--crop', '32', files[0], broken, files[1]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(broken);
    const out = JSON.parse(r.stdout) as { image: string; top: { index: number; label: string; prob: number }[] }[];
    expect(out.map((o) => o.image)).toEqual(files);
    for (const o of out) {
      expect(o.top).toHaveLength(5);
      expect(o.top[0].label).toBe(`class ${o.top[0].index}`);
      for (let k = 1; k < 5; ++k) expect(o.top[k].prob).toBeLessThanOrEqual(o.top[k - 1].prob);
      expect(o.top.reduce((s, t) => s + t.prob, 0)).toBeLessThanOrEqual(1 + 1e-6);
    }
    const text = cli('predict', '--model', path.join(fixtures, 'plain-tiny.json'), '--weights', path.join(fixtures, 'plain-tiny.weights.safetensors'),
      '--resize', '32', '--crop', '32', '--topk', '2', files[0]);
    expect(text.status).toBe(0);
    expect(text.stdout.split('\n').filter((l) => l.includes('%'))).toHaveLength(2);
  });
});

describe('visionllama serve (arguments)', () => {
  test('bad arguments say what is expected, before anything listens', () => {
    const help = cli('serve', '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/usage: visionllama serve --model/);
    const cases: [string[], RegExp][] = [
      [[], /--model is required/],
      [['--weights', 'w.pth', '--model', 'plain-s'], /--weights must follow the --model it belongs to/],
      [['--model', 'plain-s', '--dtype', 'f64'], /--dtype must be f32, bf16, f16, got 'f64'/],
      [['--model', 'plain-s', '--device', 'tpu'], /--device must be cpu, cuda or cuda:N, got 'tpu'/],
      [['--model', 'plain-s', '--device', 'cpu:3'], /cpu:3/],
      [['--model', 'plain-s', '--crop', '0'], /--crop must be an integer >= 1/],
      [['--model', 'plain-s', '--name', 'a', '--name', 'b'], /--name given twice for --model plain-s/],
      [['--model', 'plain-s', '--max-batch', '0'], /--max-batch must be an integer >= 1/],
      [['--model', 'plain-s', 'extra'], /unexpected argument 'extra'/],
      [['--model', 'plain-xl'], /unknown model 'plain-xl'/],
      [['--model', 'plain-s', '--name', 'bad name'], /model name 'bad name' may only use/],
    ];
    for (const [args, message] of cases) {
      const r = cli('serve', ...args);
      expect({ args, status: r.status }).toEqual({ args, status: 1 });
      expect(r.stderr).toMatch(message);
      expect(r.stdout).not.toMatch(/listening/);
    }
  });
});
