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
