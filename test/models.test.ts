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
