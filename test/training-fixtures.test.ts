// Training against the reference fixtures (computed by an independent
// PyTorch implementation): the loss, every parameter's gradient, and the
// parameters after one AdamW step.
import * as fs from 'fs';
import * as path from 'path';
import * as vl from '../lib';

const dir = path.join(__dirname, 'fixtures', 'models');
const config = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0, diff = 0;
  for (let i = 0; i < want.length; ++i) {
    scale = Math.max(scale, Math.abs(want[i]));
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
  }
  return diff / Math.max(scale, 1e-12);
}

describe.each(['plain-tiny', 'pyramid-tiny'])('%s', (name) => {
  test('loss, gradients of every parameter (1e-4 relative) and one AdamW step', async () => {
    const weights = await vl.io.load(path.join(dir, `${name}.weights.safetensors`));
    const cases = await vl.io.load(path.join(dir, `${name}.case.safetensors`));
    using model = vl.models.create(config(name));
    model.loadStateDict(weights);
    for (const t of weights.values()) t.dispose();
    model.train();
    const loss = vl.tidy(() => {
      const logits = model.forward(cases.get('input.0')!);
      const l = vl.nn.crossEntropy(logits, cases.get('labels.0')!);
      l.backward();
      return l;
    });
    const wantLoss = cases.get('loss.0')!.dataSync()[0];
    expect(Math.abs(loss.dataSync()[0] - wantLoss) / Math.abs(wantLoss)).toBeLessThan(1e-5);
    loss.dispose();

    const params = [...model.namedParameters()];
    for (const [pname, p] of params) {
      const want = cases.get(`grad.${pname}`);
      if (!want) throw new Error(`the fixture has no grad.${pname}`);
      expect(p.grad).not.toBeNull();
      const err = relErr(p.grad!.dataSync(), want.dataSync());
      if (!(err < 1e-4)) throw new Error(`grad.${pname}: relative error ${err}`);
    }
    // The fixture's step used PyTorch's gradients; start from them so this checks the update alone.
    for (const [pname, p] of params) {
      p.grad!.dispose();
      p.grad = vl.keep(cases.get(`grad.${pname}`)!.contiguous());
    }
    const opt = new vl.optim.AdamW(model.namedParameters(), { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.05, noDecay: [] });
    opt.step();
    for (const [pname, p] of params) {
      const err = relErr(p.dataSync(), cases.get(`adamw1.${pname}`)!.dataSync());
      if (!(err < 1e-5)) throw new Error(`adamw1.${pname}: relative error ${err}`);
    }
    opt.zeroGrad();
    expect(params.every(([, p]) => p.grad === null)).toBe(true);
    opt.dispose();
    for (const t of cases.values()) t.dispose();
  });
});
