// The plain and pyramid models against the reference logits of the fixtures
// (SPEC: computed in fp32 by an independent PyTorch implementation).
import * as path from 'path';
import * as vl from '../lib';
import * as models from '../lib/models';
import * as fs from 'fs';
import { maxAbsDiff } from './helpers';

const dir = path.join(__dirname, 'fixtures', 'models');
const config = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));

async function loadCase(name: string) {
  return vl.io.loadSafetensors(path.join(dir, `${name}.case.safetensors`), { names: ['input.0', 'logits.0', 'input.1', 'logits.1'] });
}

function scaleOf(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; ++i) m = Math.max(m, Math.abs(v[i]));
  return m;
}

describe.each(['plain-tiny', 'plain-tiny-autoscale', 'pyramid-tiny'])('%s', (name) => {
  test.each(['safetensors', 'pth'])('logits from the .%s weights match the reference within 1e-4 of their scale', async (format) => {
    const weights = await vl.io.load(path.join(dir, `${name}.weights.${format}`));
    using model = models.create(config(name));
    model.loadStateDict(weights);
    for (const t of weights.values()) t.dispose();
    const cases = await loadCase(name);
    for (const k of ['0', '1']) {
      using logits = model.forward(cases.get(`input.${k}`)!);
      const want = await cases.get(`logits.${k}`)!.data();
      const got = await logits.data();
      expect(logits.shape).toEqual(cases.get(`logits.${k}`)!.shape);
      expect(maxAbsDiff(got, want) / scaleOf(want)).toBeLessThan(1e-4);
    }
    for (const t of cases.values()) t.dispose();
  });
});

describe('model API', () => {
  test('namedParameters follow the released names; strict loading lists every problem and loads nothing', async () => {
    using model = models.create(config('plain-tiny'));
    const names = [...model.namedParameters()].map(([n]) => n);
    expect(names).toEqual(expect.arrayContaining(['cls_token', 'patch_embed.proj.weight', 'blocks.1.attn.qkv.bias', 'blocks.0.mlp.c_proj.weight', 'norm.bias', 'head.weight']));
    const weights = await vl.io.load(path.join(dir, 'plain-tiny.weights.safetensors'));
    const before = await model.head.weight.bytes();
    const broken = new Map(weights);
    broken.delete('blocks.0.gamma_1');
    broken.set('blocks.0.extra', vl.zeros([1]));
    broken.set('head.weight', vl.zeros([3, 64]));
    let err: unknown;
    try { model.loadStateDict(broken); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(vl.StateDictError);
    const e = err as vl.StateDictError;
    expect(e.missing).toEqual(['blocks.0.gamma_1']);
    expect(e.unexpected).toEqual(['blocks.0.extra']);
    expect(e.mismatched).toEqual([{ name: 'head.weight', expected: [10, 64], got: [3, 64] }]);
    expect(e.message).toMatch(/missing keys \(1\): blocks.0.gamma_1/);
    expect(Buffer.from(await model.head.weight.bytes()).equals(Buffer.from(before))).toBe(true);
    const report = model.loadStateDict(broken, { strict: false });
    expect(report.missing).toEqual(['blocks.0.gamma_1']);
    for (const t of new Set([...weights.values(), ...broken.values()])) t.dispose();
  });

  test('forwardFeatures: plain tokens and class token, pyramid stage maps', async () => {
    using plain = models.create(config('plain-tiny'));
    using x = vl.randn([2, 3, 32, 48], { seed: 1 });
    const f = (plain as models.PlainVisionLlama).forwardFeatures(x);
    expect(f.tokens.shape).toEqual([2, 1 + 4 * 6, 64]);
    expect(f.cls.shape).toEqual([2, 64]);
    f.tokens.dispose(); f.cls.dispose();
    using pyr = models.create(config('pyramid-tiny'));
    using img = vl.randn([1, 3, 100, 70], { seed: 2 });
    const { stages, tokens } = (pyr as models.PyramidVisionLlama).forwardFeatures(img);
    expect(stages.map((s) => s.map.shape)).toEqual([[1, 16, 25, 17], [1, 32, 12, 8], [1, 64, 6, 4], [1, 128, 3, 2]]);
    using logits = pyr.forward(img);
    expect(logits.shape).toEqual([1, 10]);
    for (const s of stages) s.map.dispose();
    tokens.dispose();
  });

  test('inputs the architecture cannot take are errors naming the rule', () => {
    using plain = models.create(config('plain-tiny'));
    expect(() => plain.forward(vl.zeros([1, 3, 30, 32]))).toThrow(/multiples of the patch size 8; got 30x32/);
    expect(() => plain.forward(vl.zeros([1, 1, 32, 32]))).toThrow(/expected images \[B, 3, H, W\]/);
    using pyr = models.create(config('pyramid-tiny'));
    expect(() => pyr.forward(vl.zeros([1, 3, 16, 64]))).toThrow(/needs images of at least 32x32/);
    expect(() => models.create('plain-m')).toThrow(/unknown model 'plain-m'/);
    expect(() => models.create({ arch: 'plain', dim: 66, depth: 1, heads: 2 })).toThrow(/width divisible by 4/);
  });

  test('bf16 weights stay within bf16 tolerance of f32', async () => {
    const weights = await vl.io.load(path.join(dir, 'pyramid-tiny.weights.safetensors'));
    using f32 = models.create(config('pyramid-tiny'));
    using bf16 = models.create(config('pyramid-tiny'), { dtype: 'bf16' });
    f32.loadStateDict(weights);
    bf16.loadStateDict(weights);
    for (const t of weights.values()) t.dispose();
    using x = vl.randn([1, 3, 224, 224], { seed: 3 });
    using a = f32.forward(x);
    using b = bf16.forward(x);
    const av = await a.data();
    expect(maxAbsDiff(await b.data(), av) / scaleOf(av)).toBeLessThan(0.03);
  });

  test('f16 weights stay within fp16 tolerance of f32, closer than bf16; an unknown dtype is an error', async () => {
    const weights = await vl.io.load(path.join(dir, 'plain-tiny.weights.safetensors'));
    const logits: Record<string, Float32Array> = {};
    using x = vl.randn([2, 3, 64, 48], { seed: 5 });
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      using m = models.create(config('plain-tiny'), { dtype });
      m.loadStateDict(weights);
      expect(m.weightDType).toBe(dtype);
      using y = m.forward(x);
      logits[dtype] = await y.data();
    }
    for (const t of weights.values()) t.dispose();
    const scale = scaleOf(logits.f32);
    const f16 = maxAbsDiff(logits.f16, logits.f32) / scale, bf16 = maxAbsDiff(logits.bf16, logits.f32) / scale;
    expect(f16).toBeGreaterThan(0);  // it did round
    expect(f16).toBeLessThan(5e-3);
    expect(f16).toBeLessThan(bf16);
    expect(() => models.create('plain-s', { dtype: 'f64' as never })).toThrow(/dtype must be one of f32, bf16, f16/);
  });
});
