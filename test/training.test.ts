// Training mechanics: memory per step, activation checkpointing, gradient
// accumulation, and a resumed run continuing exactly like an unbroken one; on
// every backend, whose losses follow the CPU's.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vl from '../lib';
import { bandDataset, closeTo, describeBackends, settleGc } from './helpers';

const tiny = { arch: 'plain', dim: 32, depth: 2, heads: 2, patchSize: 4, inChans: 1, numClasses: 5 };
const tinyPyramid = { arch: 'pyramid', dims: [16, 32, 32, 32], depths: [2, 2, 1, 1], heads: [1, 2, 2, 2], windowSizes: [3, 3, 3, 3], srRatios: [4, 2, 1, 1], patchSize: 2, inChans: 1, numClasses: 5 };

function gradsOf(model: vl.Module): Map<string, Float32Array> {
  return new Map([...model.namedParameters()].map(([n, p]) => [n, Float32Array.from(p.grad!.dataSync())]));
}

function step(model: vl.models.VisionLlama, x: vl.Tensor, labels: Int32Array, scale = 1): void {
  vl.tidy(() => vl.nn.crossEntropy(model.forward(x), labels).mul(scale).backward());
}

function maxRel(a: Float32Array, b: Float32Array): number {
  let d = 0, s = 1e-12;
  for (let i = 0; i < a.length; ++i) { d = Math.max(d, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); }
  return d / s;
}

describeBackends('training mechanics', (backend, device) => {
  test('a training step returns memory to its baseline (saved activations released, no leaks)', async () => {
    using model = vl.models.create(tiny, { seed: 1 }).train();
    const opt = new vl.optim.AdamW(model.namedParameters(), { lr: 1e-3 });
    const x = vl.randn([4, 1, 28, 28], { seed: 2 });
    const labels = Int32Array.from([0, 1, 2, 3]);
    const once = async () => {
      step(model, x, labels);
      opt.step();
      opt.zeroGrad();
      await vl.synchronize();
    };
    await once();  // creates the optimizer state
    await settleGc(() => vl.memory()[device].gcReleased);
    const before = vl.memory()[device];
    for (let i = 0; i < 3; ++i) await once();
    const after = vl.memory()[device];
    expect(after.tensors).toBe(before.tensors);
    expect(after.allocatedBytes).toBe(before.allocatedBytes);
    opt.dispose();
    x.dispose();
  });

  test.each([['plain', tiny, 28], ['pyramid', tinyPyramid, 20]] as const)('%s: activation checkpointing gives the same gradients', (_, config, size) => {
    const x = vl.randn([2, 1, size, size], { seed: 3 });
    const labels = Int32Array.from([1, 4]);
    using model = vl.models.create(config, { seed: 4 }).train();
    step(model, x, labels);
    const plain = gradsOf(model);
    model.zeroGrad();
    model.activationCheckpointing = true;
    step(model, x, labels);
    const ckpt = gradsOf(model);
    for (const [name, g] of plain) {
      const err = maxRel(ckpt.get(name)!, g);
      if (!(err < 1e-5)) throw new Error(`${name}: ${err}`);
    }
    x.dispose();
  });

  test('gradients accumulate across micro-batches', () => {
    const x = vl.randn([4, 1, 28, 28], { seed: 5 });
    const labels = Int32Array.from([0, 1, 2, 3]);
    using model = vl.models.create(tiny, { seed: 6 }).train();
    step(model, x, labels);
    const full = gradsOf(model);
    model.zeroGrad();
    // Two halves, each loss weighted by its share of the batch: the grads add up to the full batch's.
    for (const h of [0, 1]) vl.tidy(() => step(model, x.narrow(0, 2 * h, 2), labels.subarray(2 * h, 2 * h + 2), 0.5));
    const acc = gradsOf(model);
    for (const [name, g] of full) {
      const err = maxRel(acc.get(name)!, g);
      if (!(err < 1e-4)) throw new Error(`${name}: ${err}`);
    }
    x.dispose();
  });

  // The CPU is the reference for the other backends.
  if (backend !== 'cpu') {
    test('a few AdamW steps give the losses of the same steps on the CPU', async () => {
      const run = (on: string): number[] => {
        vl.setDefaultDevice(on);
        try {
          using model = vl.models.create(tiny, { seed: 12 }).train();
          const opt = new vl.optim.AdamW(model.namedParameters(), { lr: 1e-3 });
          using x = vl.randn([4, 1, 28, 28], { seed: 13 });
          const labels = Int32Array.from([4, 3, 2, 1]);
          const losses: number[] = [];
          for (let i = 0; i < 4; ++i) {
            losses.push(vl.tidy(() => {
              const loss = vl.nn.crossEntropy(model.forward(x), labels);
              loss.backward();
              return loss.dataSync()[0];
            }));
            opt.step();
            opt.zeroGrad();
          }
          opt.dispose();
          return losses;
        } finally {
          vl.setDefaultDevice(device);
        }
      };
      const cpu = run('cpu');
      const here = run(device);
      expect(cpu[3]).toBeLessThan(cpu[0]);
      // f32 GEMMs through 3 bf16 passes, then AdamW steps that are nearly sign(g) * lr at first.
      if (!closeTo(here, cpu, 1e-3)) throw new Error(`losses on ${device} ${here} vs on cpu ${cpu}`);
    });
  }

  test('a run resumed from its checkpoint continues with the same losses as one that never stopped', async () => {
    const dataset = bandDataset(96);
    const loader = () => new vl.data.DataLoader({ dataset, transform: { kind: 'gray-train', pad: 2, mean: 0.3, std: 0.3 }, batchSize: 16, seed: 7, workers: 0, dropLast: true });
    const options = { epochs: 3, lr: 3e-3, warmupEpochs: 1, dropPath: 0.2, labelSmoothing: 0.1, seed: 11 };
    const run = async (epochs: number, dir: string | null, resume: boolean) => {
      using model = vl.models.create(tiny, { seed: 8 });
      const losses: number[] = [];
      const trainer = new vl.train.Trainer(model, { ...options, outDir: dir, resume, onStep: (s) => losses.push(s.loss) });
      const data = loader();
      const r = await trainer.fit(data, undefined, { stopAfter: epochs });
      await data.close();
      trainer.dispose();
      return { losses, history: r.epochs };
    };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-resume-'));
    try {
      const straight = await run(3, null, false);
      const first = await run(1, dir, false);
      const rest = await run(3, dir, true);
      expect(straight.losses.length).toBe(18);
      expect(first.losses).toEqual(straight.losses.slice(0, 6));
      expect(rest.losses).toEqual(straight.losses.slice(6));
      expect(rest.history.map((e) => e.epoch)).toEqual([1, 2, 3]);
      const state = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
      expect(state).toMatchObject({ epoch: 3, batchInEpoch: 0, step: 18 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
