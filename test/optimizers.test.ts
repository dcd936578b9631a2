// The optimizer classes: weight-decay exclusions, state round trips, clipping, EMA.
import * as vl from '../lib';

const tiny = { arch: 'plain', dim: 32, depth: 1, heads: 2, patchSize: 4, inChans: 1, numClasses: 3 };

function withGrads(model: vl.Module, seed: number): void {
  let i = 0;
  for (const [, p] of model.namedParameters()) p.grad = vl.keep(vl.randn([...p.shape], { seed: seed + i++ }));
}

function values(model: vl.Module): Float32Array[] {
  return [...model.namedParameters()].map(([, p]) => Float32Array.from(p.dataSync()));
}

describe('optimizers', () => {
  test('AdamW excludes norms, biases, LayerScale and the class token from weight decay by default', () => {
    using model = vl.models.create(tiny);
    const opt = new vl.optim.AdamW(model.namedParameters());
    expect(opt.decayed.sort()).toEqual([
      'blocks.0.attn.proj.weight', 'blocks.0.attn.qkv.weight', 'blocks.0.mlp.c_fc1.weight', 'blocks.0.mlp.c_fc2.weight',
      'blocks.0.mlp.c_proj.weight', 'head.weight', 'patch_embed.proj.weight',
    ]);
    expect(new vl.optim.AdamW(model.namedParameters(), { noDecay: [] }).decayed.length).toBe([...model.namedParameters()].length);
    expect(new vl.optim.AdamW(model.namedParameters(), { noDecay: ['head.*', /qkv/] }).decayed).not.toContain('head.weight');
    expect(vl.optim.matchesPattern('blocks.3.mlp.c_fc1.weight', 'mlp.*')).toBe(true);
    expect(vl.optim.matchesPattern('blocks.3.mlp.c_fc1.weight', 'fc1')).toBe(false);
    opt.dispose();
  });

  test.each(['AdamW', 'Lamb', 'SGD'] as const)('%s: a restored state continues exactly like the original', (kind) => {
    const make = (m: vl.Module) => kind === 'AdamW' ? new vl.optim.AdamW(m.namedParameters(), { lr: 1e-2 })
      : kind === 'Lamb' ? new vl.optim.Lamb(m.namedParameters(), { lr: 1e-2 }) : new vl.optim.SGD(m.namedParameters(), { lr: 1e-2, momentum: 0.9 });
    using a = vl.models.create(tiny, { seed: 1 });
    using b = vl.models.create(tiny, { seed: 2 });
    const oa = make(a);
    withGrads(a, 10);
    oa.step();
    const before = values(a);
    expect(before.some((v, i) => v.some((x, j) => x !== values(b)[i][j]))).toBe(true);
    // b takes a's weights and optimizer state, then both take the same second step.
    b.loadStateDict(new Map(a.namedParameters()));
    const ob = make(b);
    ob.loadStateDict(oa.stateDict());
    withGrads(a, 20);
    withGrads(b, 20);
    oa.step();
    ob.step();
    const va = values(a), vb = values(b);
    va.forEach((v, i) => expect(Buffer.from(v.buffer).equals(Buffer.from(vb[i].buffer))).toBe(true));
    expect(va.some((v, i) => v.some((x, j) => x !== before[i][j]))).toBe(true);
    expect(() => ob.loadStateDict({ meta: { kind: 'Other', steps: {} }, tensors: new Map() })).toThrow(vl.StateDictError);
    oa.dispose();
    ob.dispose();
  });

  test('SGD without momentum is p - lr·g; parameters stay the same tensors', () => {
    const p = vl.tensor([1, 2, 3], [3]);
    p.requiresGrad = true;
    p.grad = vl.keep(vl.tensor([0.5, -1, 2], [3]));
    const opt = new vl.optim.SGD([['w', p]], { lr: 0.1, momentum: 0 });
    opt.step();
    expect(Array.from(p.dataSync()).map((v) => +v.toFixed(6))).toEqual([0.95, 2.1, 2.8]);
    opt.zeroGrad();
    expect(p.grad).toBeNull();
    p.dispose();
  });

  test('clipGradNorm scales every gradient to the global norm; WeightEma averages in place', () => {
    const a = vl.tensor([3, 0], [2]), b = vl.tensor([4], [1]);
    a.grad = vl.keep(vl.tensor([3, 0], [2]));
    b.grad = vl.keep(vl.tensor([4], [1]));
    expect(vl.optim.clipGradNorm([a, b], 1)).toBeCloseTo(5, 5);
    expect(Array.from(a.grad!.dataSync())[0]).toBeCloseTo(0.6, 5);
    expect(Array.from(b.grad!.dataSync())[0]).toBeCloseTo(0.8, 5);
    expect(vl.optim.clipGradNorm([a, b], 10)).toBeCloseTo(1, 5);  // under the limit: unchanged
    const ema = new vl.optim.WeightEma([['a', a]], 0.9);
    const moved = vl.tensor([13, 10], [2]);
    a.assign(moved);
    ema.update([['a', a]]);
    expect(Array.from(ema.stateDict().get('a')!.dataSync()).map((v) => +v.toFixed(5))).toEqual([4, 1]);
    for (const t of [a, b, moved]) t.dispose();
    ema.dispose();
  });

  test('bad arguments say what is expected', () => {
    const p = vl.zeros([2]);
    expect(() => new vl.optim.AdamW([['p', p]], { lr: -1 })).toThrow(/lr must be a non-negative number/);
    expect(() => new vl.optim.AdamW([['p', p]], { betas: [0.9, 1.5] })).toThrow(/betas must be two numbers in \[0, 1\)/);
    expect(() => new vl.optim.AdamW([])).toThrow(/no parameters given/);
    expect(() => new vl.optim.AdamW([['p', p], ['p', p]])).toThrow(/listed twice/);
    const i = vl.tensor([1, 2], [2], { dtype: 'i32' });
    expect(() => new vl.optim.SGD([['i', i]])).toThrow(/training updates f32 parameters/);
    expect(() => vl.optim.clipGradNorm([p], 0)).toThrow(/maxNorm must be a positive number/);
    p.dispose();
    i.dispose();
  });
});

// The fused step (one multi-tensor call per device) against the per-tensor
// step, on every backend: the same bits on one backend, and close to the CPU.
describe.each(vl.backends())('fused optimizer steps on %s', (backend) => {
  const device = backend === 'cpu' ? 'cpu' : `${backend}:0`;
  // Ragged sizes around the kernels' chunks (2^14 elements for LAMB's partial
  // sums and the CUDA blocks, 2^15 per CPU task), so work items span tensor
  // boundaries; the norm and bias names get no weight decay by default.
  const shapes: [string, number[]][] = [
    ['embed.weight', [40000]], ['embed.bias', [1]], ['blocks.0.norm1.weight', [16384]], ['blocks.0.fc.weight', [16385]],
    ['blocks.0.fc.bias', [5, 7]], ['head.weight', [3, 100]],
  ];
  const makeParams = (dev: string) => shapes.map(([name, shape], i): [string, vl.Tensor] =>
    [name, vl.keep(vl.randn(shape, { seed: 100 + i, device: dev }))]);
  type Kind = 'AdamW' | 'Lamb' | 'SGD' | 'SGD nesterov' | 'SGD without momentum';
  const make = (kind: Kind, params: [string, vl.Tensor][], fused: boolean): vl.optim.Optimizer => {
    const common = { lr: 1e-2, weightDecay: 0.05, fused };
    if (kind === 'AdamW') return new vl.optim.AdamW(params, common);
    if (kind === 'Lamb') return new vl.optim.Lamb(params, common);
    if (kind === 'SGD') return new vl.optim.SGD(params, { ...common, momentum: 0.9, dampening: 0.1 });
    if (kind === 'SGD nesterov') return new vl.optim.SGD(params, { ...common, momentum: 0.9, nesterov: true });
    return new vl.optim.SGD(params, { ...common, momentum: 0 });
  };
  const bytes = (t: vl.Tensor) => Buffer.from(Float32Array.from(t.dataSync()).buffer);

  test.each(['AdamW', 'Lamb', 'SGD', 'SGD nesterov', 'SGD without momentum'] as Kind[])(
    '%s: the fused step equals the per-tensor step bit for bit over 4 steps, skipping parameters without gradients', (kind) => {
      const runs = [{ dev: device, fused: true }, { dev: device, fused: false }, { dev: 'cpu', fused: false }].map(({ dev, fused }) => {
        const params = makeParams(dev);
        return { params, opt: make(kind, params, fused) };
      });
      for (let step = 0; step < 4; ++step) {
        for (const { params, opt } of runs) {
          params.forEach(([, p], i) => {
            p.grad?.dispose();
            // Some parameters have no gradient in some steps: they are skipped and their step counts lag.
            p.grad = (step === 1 && i % 2 === 1) || (step === 2 && i === 0) ? null
              : vl.keep(vl.randn([...p.shape], { seed: 1000 * step + i, device: p.device }));
          });
          opt.step();
        }
      }
      const [fused, unfused, cpu] = runs.map(({ params, opt }) => ({ params, state: opt.stateDict() }));
      expect(fused.state.meta.steps).toEqual(unfused.state.meta.steps);
      expect(fused.state.meta.steps).toEqual({ 'embed.weight': 3, 'embed.bias': 3, 'blocks.0.norm1.weight': 4, 'blocks.0.fc.weight': 3, 'blocks.0.fc.bias': 4, 'head.weight': 3 });
      expect([...fused.state.tensors.keys()]).toEqual([...unfused.state.tensors.keys()]);
      fused.params.forEach(([name, p], i) => {
        expect([name, bytes(p).equals(bytes(unfused.params[i][1]))]).toEqual([name, true]);
        if (device !== 'cpu') expect(maxRelDiff(p.dataSync(), cpu.params[i][1].dataSync())).toBeLessThan(1e-5);
      });
      for (const [key, t] of fused.state.tensors) expect([key, bytes(t).equals(bytes(unfused.state.tensors.get(key)!))]).toEqual([key, true]);
      for (const { params, opt } of runs) {
        opt.dispose();
        for (const [, p] of params) { p.grad?.dispose(); p.dispose(); }
      }
    });

  test('a step whose update fails changes nothing (step counts included)', () => {
    const params = makeParams(device);
    const opt = new vl.optim.AdamW(params);
    params.forEach(([, p], i) => { p.grad = vl.keep(vl.randn(i === 3 ? [2] : [...p.shape], { device })); });
    const before = params.map(([, p]) => bytes(p));
    expect(() => opt.step()).toThrow(/adamwUpdateMulti: grads\[3\] f32\[2\] on \S+ must have the shape of params\[3\] f32\[16385\]/);
    expect(Object.values(opt.stateDict().meta.steps as Record<string, number>)).toEqual([0, 0, 0, 0, 0, 0]);
    params.forEach(([, p], i) => expect(bytes(p).equals(before[i])).toBe(true));
    opt.dispose();
    for (const [, p] of params) { p.grad?.dispose(); p.dispose(); }
  });
});

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, s = 1e-30;
  for (let i = 0; i < a.length; ++i) { d = Math.max(d, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); }
  return d / s;
}
