// Results do not depend on the thread count, and the SIMD variants agree.
import * as vl from '../lib';
import { maxAbsDiff, requireLib, runNode } from './helpers';

async function workload(): Promise<Buffer[]> {
  const outs = vl.tidy(() => {
    const a = vl.randn([333, 517], { seed: 11 });
    const b = vl.rand([517], { seed: 12, low: -1, high: 1 });
    // Long and short reductions, strided copies, conversions, broadcasting.
    const x = vl.randn([64, 50, 96], { seed: 13 }), g = vl.randn([96], { seed: 14 }), s = vl.randn([64, 1, 1], { seed: 15 });
    const long = vl.randn([100000, 33], { seed: 16 });
    return [a, a.add(b).mul(a), a.transpose().contiguous(), a.sum(), a.sum(0), a.sum(1), a.to('bf16'), a.to('f16'),
      vl.randn([1 << 20], { seed: 3 }).sum(),
      // Per-row broadcasts (both orders), per-sample scalars, column sums
      // over leading dims (bias gradients), transposing copies.
      x.mul(g), g.div(x), x.sub(s), x.div(2), x.sum([0, 1]), x.sum([0, 1], { keepdim: true }), x.sum(1),
      long.sum(0), long.to('bf16').sum(0), x.transpose(0, 2).contiguous(),
      // The weight gradient GEMM with a transposed A.
      vl.ops.matmul(x.reshape(-1, 96).transpose(), vl.randn([3200, 40], { seed: 17 }))];
  });
  const bytes = await Promise.all(outs.map(async (t) => Buffer.from(await t.bytes())));
  for (const t of outs) t.dispose();
  return bytes;
}

describe('thread pool', () => {
  afterAll(() => vl.setNumThreads(2));

  test('1 and 2 threads give bit-identical results', async () => {
    vl.setNumThreads(1);
    expect(vl.cpuInfo().threads).toBe(1);
    const one = await workload();
    vl.setNumThreads(2);
    expect(vl.cpuInfo().threads).toBe(2);
    const two = await workload();
    expect(one.length).toBe(20);
    one.forEach((b, i) => expect(b.equals(two[i])).toBe(true));
  });

  test('VLLAMA_NUM_THREADS sets the pool size; a bad value fails the load clearly', () => {
    const ok = runNode(`${requireLib} console.log(vl.cpuInfo().threads)`, { VLLAMA_NUM_THREADS: '3' });
    expect(ok.stdout.trim()).toBe('3');
    const bad = runNode(`${requireLib} vl.zeros([1])`, { VLLAMA_NUM_THREADS: 'lots' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/VLLAMA_NUM_THREADS must be an integer from 1 to 1024, got 'lots'/);
  });
});

describe('instruction sets', () => {
  const script = `${requireLib}
    (async () => {
      const a = vl.randn([4097], { seed: 5 });
      const b = vl.randn([4097], { seed: 6 });
      const out = {
        isa: vl.cpuInfo().isa,
        bf16: Buffer.from(await a.to('bf16').bytes()).toString('base64'),
        f16: Buffer.from(await a.mul(1000).to('f16').bytes()).toString('base64'),
        back: Buffer.from(await a.to('bf16').to('f32').bytes()).toString('base64'),
        add: Buffer.from(await a.add(b).bytes()).toString('base64'),
        div: Buffer.from(await a.div(b).bytes()).toString('base64'),
        // Row broadcasts and scalars, column sums and transposes are the same bits on every ISA.
        bcast: await Promise.all([a.reshape(17, 241).sub(b.narrow(0, 0, 241)), b.narrow(0, 0, 241).div(a.reshape(17, 241)),
          a.reshape(17, 241).div(b.narrow(0, 0, 17).reshape(17, 1)), a.mul(3), vl.full([], 3).sub(a),
          a.reshape(17, 241).sum(0), a.narrow(0, 0, 4096).reshape(64, 64).transpose().contiguous()]
          .map(async (t) => Buffer.from(await t.bytes()).toString('base64'))),
        sum: Array.from(await a.reshape(17, 241).sum(1).data()),
      };
      console.log(JSON.stringify(out));
    })();`;
  const supported = vl.cpuInfo().supportedIsas;

  test('every supported ISA computes the same conversions and elementwise results', () => {
    expect(supported[0]).toBe('scalar');
    const runs = supported.map((isa) => {
      const r = runNode(script, { VLLAMA_CPU_ISA: isa });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout);
    });
    runs.forEach((r, i) => expect(r.isa).toBe(supported[i]));
    for (const r of runs.slice(1)) {
      for (const k of ['bf16', 'f16', 'back', 'add', 'div']) expect(r[k]).toBe(runs[0][k]);
      expect(r.bcast).toEqual(runs[0].bcast);
      expect(maxAbsDiff(r.sum, runs[0].sum)).toBeLessThan(1e-4);
    }
  });

  test('an unknown or unsupported VLLAMA_CPU_ISA fails the load and names the choices', () => {
    const r = runNode(`${requireLib} vl.zeros([1])`, { VLLAMA_CPU_ISA: 'neon' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/VLLAMA_CPU_ISA='neon' is not available on this CPU: expected one of scalar/);
  });
});
