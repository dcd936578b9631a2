// dispose(), `using` and tidy() bring the memory counters back to their
// baseline; the GC finalizer is a safety net that is counted. Each backend's
// device has its own counters.
import * as vl from '../lib';
import { describeBackends, requireLib, runNode, settleGc } from './helpers';

describeBackends('memory', (_backend, device) => {
  const stats = (): vl.MemoryStats => vl.memory()[device];

  beforeEach(async () => {
    await vl.synchronize();
    await settleGc(() => stats().gcReleased);
  });

  test('dispose() releases at once; allocatedBytes follows once queued work has run', async () => {
    await vl.synchronize();
    const base = stats();
    const cpuTensors = vl.memory().cpu.tensors;
    const a = vl.randn([256, 256]);
    const b = a.add(1);
    expect(stats().tensors).toBe(base.tensors + 2);
    // Counted on their own device only.
    expect(vl.memory().cpu.tensors - cpuTensors).toBe(device === 'cpu' ? 2 : 0);
    expect(stats().bytes).toBe(base.bytes + 2 * 256 * 256 * 4);
    a.dispose();
    b.dispose();
    a.dispose(); // idempotent
    expect(stats().tensors).toBe(base.tensors);
    expect(stats().bytes).toBe(base.bytes);
    await vl.synchronize();
    expect(stats().allocatedBytes).toBe(base.allocatedBytes);
  });

  test('`using` disposes at the end of the block', async () => {
    await vl.synchronize();
    const base = stats();
    {
      using a = vl.zeros([1000]);
      using b = a.add(a);
      expect(stats().tensors).toBe(base.tensors + 2);
      expect((await b.data())[0]).toBe(0);
    }
    expect(stats().tensors).toBe(base.tensors);
    expect(stats().bytes).toBe(base.bytes);
  });

  test('tidy() disposes intermediates and keeps what it returns', async () => {
    const base = stats();
    const [x, y] = vl.tidy(() => {
      const a = vl.ones([64]);
      const b = a.mul(3);
      const c = b.add(a);
      const kept = vl.keep(a.sub(1));
      return [c, kept] as const;
    });
    expect(stats().tensors).toBe(base.tensors + 2);
    expect((await x.data())[0]).toBe(4);
    expect((await y.data())[0]).toBe(0);
    x.dispose();
    y.dispose();
    expect(stats().tensors).toBe(base.tensors);
    expect(stats().bytes).toBe(base.bytes);
  });

  test('nested tidy() hands returned tensors to the outer scope', () => {
    const base = stats();
    vl.tidy(() => {
      const inner = vl.tidy(() => {
        vl.zeros([8]);
        return { t: vl.ones([8]) };
      });
      expect(stats().tensors).toBe(base.tensors + 1);
      expect(inner.t.isDisposed).toBe(false);
    });
    expect(stats().tensors).toBe(base.tensors);
  });

  test('tidy() disposes on throw and rejects async functions', async () => {
    const base = stats();
    expect(() => vl.tidy(() => {
      vl.zeros([8]);
      throw new Error('boom');
    })).toThrow('boom');
    expect(stats().tensors).toBe(base.tensors);
    expect(() => vl.tidy((async () => vl.zeros([2])) as unknown as () => void)).toThrow(vl.ArgumentError);
    expect(stats().tensors).toBe(base.tensors);
  });

  test('memory() returns to baseline after many ops', async () => {
    await vl.synchronize();
    const base = stats();
    for (let i = 0; i < 200; ++i) {
      vl.tidy(() => vl.randn([32, 32], { seed: i }).transpose().contiguous().mul(2).sum(0)).dispose();
    }
    await vl.synchronize();
    const after = stats();
    expect(after.tensors).toBe(base.tensors);
    expect(after.bytes).toBe(base.bytes);
    expect(after.allocatedBytes).toBe(base.allocatedBytes);
    expect(after.allocations).toBeGreaterThan(base.allocations);
  });

  test('a long chain queued at once holds only its live blocks (blocks are taken in stream order)', async () => {
    await vl.synchronize();
    vl.emptyCache(device);
    const base = stats();
    const n = 1 << 20;  // 4 MiB per tensor
    let x = vl.zeros([n]);
    for (let i = 0; i < 40; ++i) {
      const next = x.add(1);
      x.dispose();  // JavaScript lets go at once; the queued kernels still hold it
      x = next;
    }
    expect((await x.data())[n - 1]).toBe(40);
    // Blocks taken at enqueue time would have reserved all 41 tensors (164 MiB).
    expect(stats().reservedBytes - base.reservedBytes).toBeLessThanOrEqual(3 * 4 * n);
    x.dispose();
  });

  test('the GC finalizer releases forgotten tensors and counts them', () => {
    const r = runNode(`${requireLib}
      (async () => {
        const device = ${JSON.stringify(device)};
        const base = vl.memory()[device];
        (function leak() { for (let i = 0; i < 50; ++i) vl.zeros([1024], { device }); })();
        // Finalizers run at a GC of V8's choosing: collect until they have (bounded).
        for (let i = 0; i < 50 && vl.memory()[device].tensors > base.tensors; ++i) {
          global.gc(); await new Promise((r) => setTimeout(r, 5));
        }
        await vl.synchronize();
        const m = vl.memory()[device];
        console.log(JSON.stringify({ leaked: m.tensors - base.tensors, gc: m.gcReleased, bytes: m.allocatedBytes - base.allocatedBytes }));
      })();`, { NODE_OPTIONS: '--expose-gc' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out).toEqual({ leaked: 0, gc: 50, bytes: 0 });
  });
});
