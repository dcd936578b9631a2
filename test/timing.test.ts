// Device events: marks in a device's stream order, stamped when the device
// reaches them, for timing kernels without host round trips.
import * as vl from '../lib';

describe.each(vl.backends())('events on %s', (device) => {
  test('elapsed time covers the work queued between two events, not the time to queue it', async () => {
    using a = vl.randn([512, 512], { seed: 1, device });
    using b = vl.randn([512, 512], { seed: 2, device });
    await vl.synchronize(device);
    const start = vl.recordEvent(device);
    const t0 = performance.now();
    const outs: vl.Tensor[] = [];
    for (let i = 0; i < 20; ++i) outs.push(vl.ops.matmul(a, b));
    const end = vl.recordEvent(device);
    const queued = performance.now() - t0;
    const ms = await end.elapsedSince(start);
    await vl.synchronize(device);
    const wall = performance.now() - t0;
    for (const t of outs) t.dispose();
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(wall + 1);
    // 20 GEMMs of 512^3 are far more work than queuing them (a device far
    // faster than this one would still take longer than the enqueue on CPU).
    if (device === 'cpu') expect(ms).toBeGreaterThan(queued);
    // Back to back, nothing between: about zero; the order of the two matters.
    const e1 = vl.recordEvent(device), e2 = vl.recordEvent(device);
    const tiny = await e2.elapsedSince(e1);
    expect(tiny).toBeGreaterThanOrEqual(0);
    expect(tiny).toBeLessThan(ms);
    expect(await e1.elapsedSince(e2)).toBeLessThanOrEqual(0);
  });

  test('bad arguments are errors that say what was expected', () => {
    const e = vl.recordEvent(device);
    expect(() => e.elapsedSince({} as vl.DeviceEvent)).toThrow(/expected a DeviceEvent from recordEvent/);
    expect(() => vl.recordEvent('tpu')).toThrow(/device/);
  });
});
