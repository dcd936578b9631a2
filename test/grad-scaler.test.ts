// Dynamic loss scaling: the unscale pass and its found-inf flag, steps the
// device skips (bit-identical parameters and state), the scale's backoff and
// growth, the state dict, and a Trainer run with lossScale on.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vl from '../lib';
import { adamwUpdateMulti, sgdUpdateMulti, unscaleGrads } from '../lib/ops/optim';
import { bandDataset } from './helpers';

const kinds = ['AdamW', 'Lamb', 'SGD'] as const;
type Kind = typeof kinds[number];

const shapes = [[3, 5], [7], [40, 33], [1]];

function bits(ts: Iterable<vl.Tensor>): Buffer[] {
  return [...ts].map((t) => Buffer.from(Float32Array.from(t.dataSync()).buffer));
}

describe.each(vl.backends())('on %s', (device) => {
  const rand = (shape: number[], seed: number) => vl.randn(shape, { seed, device });

  /** Parameters, a fresh optimizer of `kind` over them, and host copies of gradient seeds. */
  const setup = (kind: Kind) => {
    const params: [string, vl.Tensor][] = shapes.map((s, i) => [`p${i}`, vl.keep(rand(s, 100 + i))]);
    const opt = kind === 'AdamW' ? new vl.optim.AdamW(params, { lr: 1e-2 })
      : kind === 'Lamb' ? new vl.optim.Lamb(params, { lr: 1e-2 }) : new vl.optim.SGD(params, { lr: 1e-2, momentum: 0.9, dampening: 0.1 });
    // Gradients from seed s, times `scale` (a power of two: exact).
    const grads = (seed: number, scale = 1) => params.forEach(([, p], i) => {
      p.grad?.dispose();
      p.grad = vl.keep(vl.tidy(() => rand([...p.shape], seed * 10 + i).mul(scale)));
    });
    const state = () => bits([...params.map(([, p]) => p), ...opt.stateDict().tensors.values()]);
    const dispose = () => {
      opt.zeroGrad();
      opt.dispose();
      params.forEach(([, p]) => p.dispose());
    };
    return { params, opt, grads, state, dispose };
  };

  test('unscaleGrads: g / 2^k exactly, the flag set by inf or NaN and never cleared; argument errors', async () => {
    const gs = shapes.map((s, i) => vl.keep(rand(s, i)));
    const before = gs.map((g) => Float32Array.from(g.dataSync()));
    using flag = vl.zeros([], { device });
    unscaleGrads(gs, flag, 1 / 1024);
    expect((await flag.data())[0]).toBe(0);
    gs.forEach((g, i) => expect(Array.from(g.dataSync())).toEqual(Array.from(before[i], (x) => Math.fround(x / 1024))));
    for (const bad of [Infinity, -Infinity, NaN]) {
      using f = vl.zeros([], { device });
      using g = vl.tensor([1, bad, 3], [3], { device });
      unscaleGrads([gs[0], g], f, 0.5);
      expect((await f.data())[0]).toBe(1);
      expect(Array.from(g.dataSync())).toEqual([0.5, bad * 0.5, 1.5]);
      unscaleGrads([gs[1]], f, 1);  // finite: the flag stays set
      expect((await f.data())[0]).toBe(1);
    }
    using wide = vl.zeros([2], { device });
    expect(() => unscaleGrads(gs, wide, 1)).toThrow(/foundInf must be one f32 element/);
    expect(() => unscaleGrads(gs, flag, 0)).toThrow(/invScale must be > 0/);
    expect(() => unscaleGrads(gs, flag, Infinity)).toThrow(/invScale must be a finite number/);
    gs.forEach((g) => g.dispose());
  });

  test('the multi-tensor updates and Optimizer.step check the flag they are given', () => {
    const s = setup('AdamW');
    s.grads(1);
    const ps = s.params.map(([, p]) => p), gs = ps.map((p) => p.grad!);
    const ms = ps.map((p) => vl.keep(vl.zeros([...p.shape], { device }))), vs = ps.map((p) => vl.keep(vl.zeros([...p.shape], { device })));
    const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecays: ps.map(() => 0), steps: ps.map(() => 1) };
    using wide = vl.zeros([2], { device });
    expect(() => adamwUpdateMulti(ps, gs, ms, vs, { ...o, foundInf: wide })).toThrow(/foundInf must be one f32 element/);
    expect(() => sgdUpdateMulti(ps, gs, [], { lr: 1, momentum: 0, dampening: 0, nesterov: false, weightDecays: o.weightDecays,
      firstSteps: ps.map(() => true), foundInf: ps[3] })).toThrow(/foundInf and params\[3\] share memory/);
    expect(() => s.opt.step({ foundInf: new Map() })).toThrow(/no found-inf flag for the gradients on/);
    expect(s.opt.stateDict().meta.steps).toEqual({ p0: 0, p1: 0, p2: 0, p3: 0 });
    expect(() => s.opt.uncountStep(['p0'])).toThrow(/has no step to take back/);
    [...ms, ...vs].forEach((t) => t.dispose());
    s.dispose();
  });

  test.each(kinds)('%s: a step with an inf or NaN gradient is skipped on the device (bit-identical), its counts taken back, the scale backs off', async (kind) => {
    for (const bad of [Infinity, NaN]) {
      const s = setup(kind);
      const scaler = new vl.optim.GradScaler({ initScale: 2 ** 10 });
      s.grads(1, 2 ** 10);
      scaler.step(s.opt);
      scaler.update();
      await scaler.settle();
      const before = s.state();
      const meta = s.opt.stateDict().meta;
      s.grads(2, 2 ** 10);
      const last = s.params[2][1];
      const g = Float32Array.from(last.grad!.dataSync());
      g[17] = bad;
      last.grad!.dispose();
      last.grad = vl.keep(vl.tensor(g, [...last.shape], { device }));
      scaler.step(s.opt);
      scaler.update();
      await scaler.settle();
      expect(s.state()).toEqual(before);
      expect(s.opt.stateDict().meta).toEqual(meta);
      expect(scaler.scaleValue).toBe(2 ** 9);
      // The next good step is the second update of each parameter, as if the bad one never happened.
      const ref = setup(kind);
      ref.grads(1);
      ref.opt.step();
      ref.grads(3);
      ref.opt.step();
      s.grads(3, 2 ** 9);
      scaler.step(s.opt);
      scaler.update();
      await scaler.settle();
      expect(s.state()).toEqual(ref.state());
      s.dispose();
      ref.dispose();
      scaler.dispose();
    }
  });

  test.each(kinds)('%s: finite steps equal unscaled ones bit for bit (power-of-two scales), through growth', async (kind) => {
    const s = setup(kind);
    const ref = setup(kind);
    const scaler = new vl.optim.GradScaler({ initScale: 2 ** 12, growthInterval: 2 });
    for (let k = 1; k <= 5; ++k) {
      const scale = scaler.scaleValue;
      s.grads(k, scale);
      scaler.step(s.opt);
      scaler.update();
      await scaler.settle();
      ref.grads(k);
      ref.opt.step();
      expect(s.state()).toEqual(ref.state());
    }
    expect(scaler.scaleValue).toBe(2 ** 14);  // grew after steps 2 and 4
    expect(scaler.stateDict()).toMatchObject({ scale: 2 ** 14, growthTracker: 1 });
    s.dispose();
    ref.dispose();
    scaler.dispose();
  });

  test('scale() multiplies the loss; unscale() runs once per step, so clipping sees the true gradients', async () => {
    const s = setup('SGD');
    const scaler = new vl.optim.GradScaler({ initScale: 8 });
    using loss = vl.tensor([1.5], [], { device });
    using scaled = scaler.scale(loss);
    expect((await scaled.data())[0]).toBe(12);
    s.grads(1, 8);
    scaler.unscale(s.opt);
    const once = bits(s.params.map(([, p]) => p.grad!));
    scaler.unscale(s.opt);
    expect(bits(s.params.map(([, p]) => p.grad!))).toEqual(once);
    const ref = setup('SGD');
    ref.grads(1);
    expect(once).toEqual(bits(ref.params.map(([, p]) => p.grad!)));
    const norm = vl.optim.clipGradNorm(s.params, 1e9);
    expect(norm).toBeCloseTo(vl.optim.clipGradNorm(ref.params, 1e9), 3);
    scaler.step(s.opt);
    expect(() => scaler.step(s.opt)).toThrow(/step\(\) already ran/);
    expect(() => scaler.unscale(s.opt)).toThrow(/step\(\) already ran/);
    scaler.update();
    await scaler.settle();
    s.dispose();
    ref.dispose();
    scaler.dispose();
  });

  test('an outcome that arrives inside a step waits for update(): the unscale divides by the scale the loss got', async () => {
    const s = setup('SGD');
    const ref = setup('SGD');
    const scaler = new vl.optim.GradScaler({ initScale: 2 ** 10 });
    s.grads(1, Infinity);
    scaler.step(s.opt);
    scaler.update();
    using loss = vl.tensor([1], [], { device });
    using scaled = scaler.scale(loss);
    await scaler.settle();  // the overflow is known now, but the step has begun
    expect(scaler.scaleValue).toBe(2 ** 10);
    s.grads(2, 2 ** 10);
    scaler.unscale(s.opt);
    ref.grads(2);
    expect(bits(s.params.map(([, p]) => p.grad!))).toEqual(bits(ref.params.map(([, p]) => p.grad!)));
    scaler.step(s.opt);
    scaler.update();
    expect(scaler.scaleValue).toBe(2 ** 9);
    await scaler.settle();
    s.dispose();
    ref.dispose();
    scaler.dispose();
  });

  test('an unfused optimizer takes the fused path for a loss-scaled step (the same bits), so the device can skip it', async () => {
    const make = (fused: boolean) => {
      const p = vl.keep(rand([6, 4], 7));
      return { p, opt: new vl.optim.AdamW([['w', p]], { lr: 1e-2, fused }) };
    };
    const setGrad = (p: vl.Tensor, seed: number, scale: number) => {
      p.grad?.dispose();
      p.grad = vl.keep(vl.tidy(() => rand([6, 4], seed).mul(scale)));
    };
    const a = make(false), ref = make(true);
    const scaler = new vl.optim.GradScaler({ initScale: 4 });
    for (const [seed, bad] of [[21, false], [22, true], [23, false]] as const) {
      const before = bits([a.p]);
      setGrad(a.p, seed, bad ? Infinity : scaler.scaleValue);
      scaler.step(a.opt);
      scaler.update();
      await scaler.settle();
      if (bad) {
        expect(bits([a.p])).toEqual(before);
        continue;
      }
      setGrad(ref.p, seed, 1);
      ref.opt.step();
      expect(bits([a.p])).toEqual(bits([ref.p]));
    }
    expect(a.opt.stateDict().meta.steps).toEqual({ w: 2 });
    for (const { p, opt } of [a, ref]) {
      opt.zeroGrad();
      opt.dispose();
      p.dispose();
    }
    scaler.dispose();
  });

  test('a loop that never awaits still gets every outcome, at most two steps late', () => {
    const s = setup('AdamW');
    const scaler = new vl.optim.GradScaler({ initScale: 2 ** 10 });
    s.grads(1, Infinity);
    scaler.step(s.opt);
    scaler.update();
    for (let k = 2; k <= 3; ++k) {
      s.grads(k, 1);
      scaler.step(s.opt);
      scaler.update();
    }
    expect(scaler.scaleValue).toBe(2 ** 9);
    expect(() => scaler.stateDict()).toThrow(/await scaler.settle\(\)/);
    s.dispose();
    scaler.dispose();
  });
});

describe('GradScaler', () => {
  test('options and state dicts: defaults, round trip, clear errors', async () => {
    const scaler = new vl.optim.GradScaler();
    expect(scaler.stateDict()).toEqual({ scale: 2 ** 16, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, growthTracker: 0 });
    const state = { scale: 512, growthFactor: 4, backoffFactor: 0.25, growthInterval: 7, growthTracker: 3 };
    scaler.loadStateDict(state);
    expect(scaler.stateDict()).toEqual(state);
    const other = new vl.optim.GradScaler();
    other.loadStateDict(JSON.parse(JSON.stringify(scaler.stateDict())));
    expect(other.stateDict()).toEqual(state);
    expect(() => other.loadStateDict({ ...state, growthTracker: -1 })).toThrow(vl.ArgumentError);
    expect(() => other.loadStateDict(null as unknown as vl.optim.GradScalerState)).toThrow(vl.StateDictError);
    for (const [o, msg] of [
      [{ initScale: 0 }, /initScale must be a positive finite number/],
      [{ initScale: Infinity }, /initScale/],
      [{ growthFactor: 1 }, /growthFactor must be > 1/],
      [{ backoffFactor: 1 }, /backoffFactor must be in \(0, 1\)/],
      [{ backoffFactor: -0.5 }, /backoffFactor must be a positive/],
      [{ growthInterval: 1.5 }, /growthInterval must be a positive integer/],
      [{ enabled: 'yes' }, /enabled must be a boolean/],
      [{ initscale: 2 }, /unknown option initscale/],
    ] as const) {
      expect(() => new vl.optim.GradScaler(o as vl.optim.GradScalerOptions)).toThrow(vl.ArgumentError);
      expect(() => new vl.optim.GradScaler(o as vl.optim.GradScalerOptions)).toThrow(msg);
    }
  });

  test('disabled: the loss as it is and the plain optimizer step', async () => {
    const p = vl.keep(vl.tensor([1, 2], [2]));
    p.grad = vl.keep(vl.tensor([1, 1], [2]));
    const opt = new vl.optim.SGD([['w', p]], { lr: 0.5, momentum: 0 });
    const scaler = new vl.optim.GradScaler({ enabled: false });
    using loss = vl.tensor([3], []);
    expect(scaler.scale(loss)).toBe(loss);
    scaler.step(opt);
    scaler.update();
    expect(Array.from(p.dataSync())).toEqual([0.5, 1.5]);
    opt.zeroGrad();
    opt.dispose();
    p.dispose();
  });
});

describe('Trainer with lossScale', () => {
  const tiny = { arch: 'plain', dim: 32, depth: 2, heads: 2, patchSize: 4, inChans: 1, numClasses: 5 };

  test('trains a tiny model (finite, decreasing loss) and checkpoints the scaler', async () => {
    const dataset = bandDataset(64);
    const data = new vl.data.DataLoader({ dataset, transform: { kind: 'gray-train', pad: 2, mean: 0.3, std: 0.3 }, batchSize: 16, seed: 7, workers: 0, dropLast: true });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-scaler-'));
    using model = vl.models.create(tiny, { seed: 8 });
    const losses: number[] = [];
    // The first two steps' logits are multiplied by 2^120, so their scaled
    // gradients overflow (2^120 · 2^16): those steps must be skipped and the
    // scale backed off, and the run must still train.
    const forward = model.forward.bind(model);
    let calls = 0;
    model.forward = (x: vl.Tensor) => {
      const y = forward(x);
      return ++calls <= 2 ? y.mul(2 ** 120) : y;
    };
    const trainer = new vl.train.Trainer(model, {
      epochs: 4, lr: 3e-3, clipGrad: 1, seed: 11, outDir: dir, lossScale: { initScale: 2 ** 16, growthInterval: 3 },
      onStep: (s) => losses.push(s.loss),
    });
    try {
      const r = await trainer.fit(data);
      expect(losses.length).toBe(16);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(r.epochs[3].trainLoss).toBeLessThan(r.epochs[1].trainLoss);
      const steps = new Set(Object.values(trainer.optimizer.stateDict().meta.steps as Record<string, number>));
      expect([...steps]).toEqual([14]);  // the two skipped steps do not count
      // Two backoffs, then 14 good steps: four growths and a tracker of 2.
      const state = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
      expect(state.gradScaler).toEqual({ scale: 2 ** 18, growthFactor: 2, backoffFactor: 0.5, growthInterval: 3, growthTracker: 2 });
      for (const p of [...model.namedParameters()].map(([, t]) => t.dataSync())) expect(p.every(Number.isFinite)).toBe(true);
      // A resumed trainer takes the scaler state back.
      const resumed = new vl.train.Trainer(model, { epochs: 4, outDir: dir, resume: true, lossScale: { growthInterval: 3 } });
      await resumed.fit(data);
      expect(resumed.scaler!.stateDict()).toEqual(state.gradScaler);
      resumed.dispose();
    } finally {
      await data.close();
      trainer.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(() => new vl.train.Trainer(model, { epochs: 1, lossScale: 3 as unknown as boolean })).toThrow(/lossScale must be a boolean or GradScaler options/);
    expect(new vl.train.Trainer(model, { epochs: 1 }).scaler).toBeNull();
  });
});
