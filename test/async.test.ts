// Work is queued per device and runs off the JavaScript thread; reads wait.
import * as vl from '../lib';

describe('asynchronous execution', () => {
  test('100 concurrent data() calls each get their own values', async () => {
    const tensors = Array.from({ length: 100 }, (_, i) => vl.arange(i, i + 50).mul(2));
    const results = await Promise.all(tensors.map((t) => t.data()));
    results.forEach((r, i) => {
      expect(r.length).toBe(50);
      expect(r[0]).toBe(2 * i);
      expect(r[49]).toBe(2 * (i + 49));
    });
    for (const t of tensors) t.dispose();
  });

  test('100 concurrent reads of one tensor, disposed while they are in flight', async () => {
    const t = vl.randn([1000], { seed: 9 });
    const pending = Array.from({ length: 100 }, () => t.data());
    t.dispose(); // the reads already queued still complete
    const results = await Promise.all(pending);
    for (const r of results) expect(Buffer.from(r.buffer).equals(Buffer.from(results[0].buffer))).toBe(true);
  });

  test('the event loop keeps running while a large op computes', async () => {
    const order: string[] = [];
    const big = vl.randn([1 << 24], { seed: 1 }); // hundreds of ms of work
    const s = big.sum();
    const read = s.data().then(() => order.push('data'));
    await new Promise((r) => setTimeout(r, 0)).then(() => order.push('timer'));
    await read;
    expect(order).toEqual(['timer', 'data']);
    big.dispose();
    s.dispose();
  });

  test('ops return before the work is done, and reads see the results in order', async () => {
    const a = vl.zeros([1 << 20]);
    let x = a;
    const chain: vl.Tensor[] = [];
    for (let i = 0; i < 20; ++i) chain.push((x = x.add(1)));
    expect((await x.data())[12345]).toBe(20);
    a.dispose();
    for (const t of chain) t.dispose();
  });

  test('synchronize() resolves after queued work', async () => {
    const t = vl.randn([1 << 18], { seed: 2 }).mul(3);
    await vl.synchronize('cpu');
    expect(t.dataSync().length).toBe(1 << 18);
    t.dispose();
  });
});
