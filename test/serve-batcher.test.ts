// The dynamic batcher and the Prometheus text format, without HTTP.
import { Counter, DynamicBatcher, Gauge, Histogram, QueueFullError, Registry, RequestTimeoutError } from '../lib/serve';
import { PhaseLock } from '../lib/serve/phase-lock';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

describe('DynamicBatcher', () => {
  test('forms batches up to maxBatch while the model is busy, in arrival order', async () => {
    const batches: number[][] = [];
    const gates: ReturnType<typeof deferred<void>>[] = [];
    const b = new DynamicBatcher<number, number>({ maxBatch: 3, maxWaitMs: 0, capacity: 100 }, async (xs) => {
      batches.push(xs);
      const g = deferred<void>();
      gates.push(g);
      await g.promise;
      return xs.map((x) => x * 10);
    });
    const results = Array.from({ length: 7 }, (_, i) => b.submit(b.admit(), i, 10_000));
    expect(batches).toEqual([[0]]);  // the first request found the model idle
    expect(b.depth).toBe(7);
    gates[0].resolve();
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[0], [1, 2, 3]]);
    gates[1].resolve();
    await new Promise((r) => setImmediate(r));
    gates[2].resolve();
    expect(await Promise.all(results)).toEqual([0, 10, 20, 30, 40, 50, 60]);
    expect(batches).toEqual([[0], [1, 2, 3], [4, 5, 6]]);
    expect(b.depth).toBe(0);
  });

  test('an idle model waits up to maxWaitMs for the batch to fill', async () => {
    const batches: number[][] = [];
    const b = new DynamicBatcher<number, number>({ maxBatch: 4, maxWaitMs: 200, capacity: 100 }, async (xs) => {
      batches.push(xs);
      return xs;
    });
    const t0 = performance.now();
    const first = b.submit(b.admit(), 1, 10_000);
    await new Promise((r) => setTimeout(r, 10));
    const second = b.submit(b.admit(), 2, 10_000);
    await Promise.all([first, second]);
    expect(batches).toEqual([[1, 2]]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(195);
  });

  test('a full batch does not wait', async () => {
    // maxWaitMs far beyond the test's timeout, so only a batch that goes when full can pass.
    const batches: number[][] = [];
    const b = new DynamicBatcher<number, number>({ maxBatch: 4, maxWaitMs: 60_000, capacity: 100 }, async (xs) => {
      batches.push(xs);
      return xs;
    });
    expect(await Promise.all([3, 4, 5, 6].map((x) => b.submit(b.admit(), x, 120_000)))).toEqual([3, 4, 5, 6]);
    expect(batches).toEqual([[3, 4, 5, 6]]);
  }, 10_000);

  test('a failing batch is retried one by one, so only the bad request fails', async () => {
    const calls: number[][] = [];
    const b = new DynamicBatcher<number, number>({ maxBatch: 8, maxWaitMs: 5, capacity: 100 }, async (xs) => {
      calls.push(xs);
      if (xs.includes(13)) throw new Error('unlucky input');
      return xs.map((x) => x + 1);
    });
    const settled = await Promise.allSettled([1, 13, 2].map((x) => b.submit(b.admit(), x, 10_000)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[0] as PromiseFulfilledResult<number>).value).toBe(2);
    expect(((settled[1] as PromiseRejectedResult).reason as Error).message).toBe('unlucky input');
    expect(calls).toEqual([[1, 13, 2], [1], [13], [2]]);
    expect(b.depth).toBe(0);
  });

  test('capacity bounds admitted requests; a full queue says when to retry', async () => {
    const gate = deferred<void>();
    const b = new DynamicBatcher<number, number>({ maxBatch: 1, maxWaitMs: 0, capacity: 2 }, async (xs) => {
      await gate.promise;
      return xs;
    });
    const s1 = b.admit();
    const s2 = b.admit();
    expect(b.saturated).toBe(true);
    let err: unknown;
    try {
      b.admit();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QueueFullError);
    expect((err as QueueFullError).retryAfterS).toBeGreaterThanOrEqual(1);
    s2.release();  // e.g. its image did not decode
    s2.release();  // idempotent
    expect(b.depth).toBe(1);
    const p = b.submit(s1, 7, 10_000);
    const idle = b.idle();
    gate.resolve();
    expect(await p).toBe(7);
    await idle;
    expect(b.depth).toBe(0);
  });

  test('a request past its time limit is answered with RequestTimeoutError and leaves the queue', async () => {
    const gate = deferred<void>();
    const ran: number[][] = [];
    const b = new DynamicBatcher<number, number>({ maxBatch: 1, maxWaitMs: 0, capacity: 10 }, async (xs) => {
      ran.push(xs);
      await gate.promise;
      return xs;
    });
    const first = b.submit(b.admit(), 1, 10_000);
    const late = b.submit(b.admit(), 2, 20);
    await expect(late).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(b.depth).toBe(1);
    gate.resolve();
    expect(await first).toBe(1);
    await new Promise((r) => setTimeout(r, 5));
    expect(ran).toEqual([[1]]);  // the expired request never reached the model
  });

  test('after a batch of k, the next waits (up to lingerMs) until k requests are back', async () => {
    const batches: number[][] = [];
    const b = new DynamicBatcher<number, number>({ maxBatch: 8, maxWaitMs: 40, capacity: 100, lingerMs: 1000 }, async (xs) => {
      batches.push(xs);
      return xs;
    });
    await Promise.all([1, 2, 3].map((x) => b.submit(b.admit(), x, 10_000)));  // no batch before: no linger
    expect(batches).toEqual([[1, 2, 3]]);
    // The three come back one by one, 5 ms apart: each arrival keeps the wait open (it ends after
    // max(maxWaitMs, 10) = 40 quiet ms, wide enough that a loaded machine's late timers do not split it).
    const back: Promise<number>[] = [];
    for (const x of [4, 5, 6]) {
      const slot = b.admit();
      await new Promise((r) => setTimeout(r, 5));
      back.push(b.submit(slot, x, 10_000));
    }
    await Promise.all(back);
    expect(batches[1]).toEqual([4, 5, 6]);
    // Nobody else comes back: a lone request goes once arrivals have been quiet for 40 ms, long
    // before the 1000 ms linger would have run out.
    const t0 = performance.now();
    await b.submit(b.admit(), 7, 10_000);
    expect(batches[2]).toEqual([7]);
    expect(performance.now() - t0).toBeLessThan(600);
  });

  test('after a batch, requests still decoding are waited for past the quiet window (up to lingerMs)', async () => {
    const batches: number[][] = [];
    const b = new DynamicBatcher<number, number>({ maxBatch: 8, maxWaitMs: 5, capacity: 100, lingerMs: 1000 }, async (xs) => {
      batches.push(xs);
      return xs;
    });
    await Promise.all([1, 2, 3].map((x) => b.submit(b.admit(), x, 10_000)));
    expect(batches).toEqual([[1, 2, 3]]);
    // All three are admitted at once; one decodes 150 ms longer than the others, far past the
    // 10 ms quiet window, and still joins their batch.
    const slots = [4, 5, 6].map(() => b.admit());
    const early = [4, 5].map((x, i) => b.submit(slots[i], x, 10_000));
    await new Promise((r) => setTimeout(r, 150));
    expect(batches.length).toBe(1);
    const late = b.submit(slots[2], 6, 10_000);
    await Promise.all([...early, late]);
    expect(batches[1]).toEqual([4, 5, 6]);
    // A decode that fails releases its slot, and the batch goes without it.
    const s7 = b.admit(), s8 = b.admit();
    const seven = b.submit(s7, 7, 10_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(batches.length).toBe(2);
    s8.release();
    await seven;
    expect(batches[2]).toEqual([7]);
  });

  test('rejects bad settings', () => {
    const run = async (xs: number[]) => xs;
    expect(() => new DynamicBatcher({ maxBatch: 0, maxWaitMs: 0, capacity: 1 }, run)).toThrow(/maxBatch must be an integer >= 1/);
    expect(() => new DynamicBatcher({ maxBatch: 1, maxWaitMs: -1, capacity: 1 }, run)).toThrow(/maxWaitMs/);
    expect(() => new DynamicBatcher({ maxBatch: 1, maxWaitMs: 0, capacity: 0.5 }, run)).toThrow(/capacity/);
  });
});

describe('PhaseLock', () => {
  test('decodes run together, a batch waits for them, and later decodes wait for the batch', async () => {
    const lock = new PhaseLock();
    const events: string[] = [];
    const d1 = await lock.acquire('decode');
    const d2 = await lock.acquire('decode');  // decodes share a phase
    const compute = lock.acquire('compute').then((release) => {
      events.push('compute');
      return release;
    });
    const d3 = lock.acquire('decode').then((release) => {
      events.push('decode 3');
      return release;
    });
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);  // the batch waits for d1 and d2; d3 queues behind the batch
    d1();
    d1();  // idempotent
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);
    d2();
    (await compute)();
    (await d3)();
    expect(events).toEqual(['compute', 'decode 3']);
    // Idle again: either kind goes at once.
    (await lock.acquire('compute'))();
    expect(await lock.run('decode', async () => 5)).toBe(5);
  });
});

describe('Prometheus text format', () => {
  test('counters, gauges and cumulative histograms with escaped labels', () => {
    const r = new Registry();
    const c = r.register(new Counter('x_total', 'Things.', ['route', 'status']));
    const g = r.register(new Gauge('depth', 'Depth.', ['model']));
    const h = r.register(new Histogram('lat_seconds', 'Latency.', ['route'], [0.1, 1]));
    c.inc({ route: '/a"b', status: '200' });
    c.inc({ route: '/a"b', status: '200' }, 2);
    let depth = 3;
    g.set({ model: 'm' }, () => depth);
    h.observe({ route: 'r' }, 0.05);
    h.observe({ route: 'r' }, 0.5);
    h.observe({ route: 'r' }, 5);
    depth = 4;
    const text = r.render();
    expect(text).toContain('# TYPE x_total counter\nx_total{route="/a\\"b",status="200"} 3\n');
    expect(text).toContain('# TYPE depth gauge\ndepth{model="m"} 4\n');
    expect(text).toContain('lat_seconds_bucket{route="r",le="0.1"} 1\n');
    expect(text).toContain('lat_seconds_bucket{route="r",le="1"} 2\n');
    expect(text).toContain('lat_seconds_bucket{route="r",le="+Inf"} 3\n');
    expect(text).toContain('lat_seconds_sum{route="r"} 5.55\nlat_seconds_count{route="r"} 3\n');
    expect(h.stats({ route: 'r' })).toEqual({ sum: 5.55, count: 3 });
    expect(text.endsWith('\n')).toBe(true);
  });
});
