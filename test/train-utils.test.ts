// Training utilities without autograd: schedules, progress bar, metrics log, curve plots.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { ArgumentError, FormatError } from '../lib';
import {
  constant, curvesSvg, formatDuration, formatProgress, MetricsLog, plotCurves, ProgressBar, readMetrics, scheduleFromJSON, stepDecay, warmupCosine,
} from '../lib/train';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-train-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('learning-rate schedules', () => {
  test('warmupCosine: linear warm-up, cosine to minLr, clamped after totalSteps', () => {
    const s = warmupCosine({ baseLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-5, warmupStartLr: 1e-4 });
    expect(s.lrAt(0)).toBeCloseTo(1e-4, 12);
    expect(s.lrAt(5)).toBeCloseTo(5.5e-4, 12);
    expect(s.lrAt(10)).toBeCloseTo(1e-3, 12);
    expect(s.lrAt(60)).toBeCloseTo((1e-3 + 1e-5) / 2, 12); // half-way through the cosine
    expect(s.lrAt(110)).toBeCloseTo(1e-5, 12);
    expect(s.lrAt(1e6)).toBe(1e-5);
    // Decreasing after the warm-up.
    for (let i = 10; i < 110; ++i) expect(s.lrAt(i + 1)).toBeLessThanOrEqual(s.lrAt(i));
    const d = warmupCosine({ baseLr: 0.1, warmupSteps: 0, totalSteps: 4 });
    expect(d.lrAt(0)).toBeCloseTo(0.1, 12);
    expect(d.lrAt(2)).toBeCloseTo(0.05, 12);
    expect(d.lrAt(4)).toBe(0);
  });

  test('stepDecay and constant', () => {
    const s = stepDecay({ baseLr: 0.1, stepSize: 30, gamma: 0.1, warmupSteps: 5 });
    expect(s.lrAt(0)).toBe(0);
    expect(s.lrAt(2.5)).toBeCloseTo(0.05, 12);
    expect(s.lrAt(5)).toBeCloseTo(0.1, 12);
    expect(s.lrAt(34)).toBeCloseTo(0.1, 12);
    expect(s.lrAt(35)).toBeCloseTo(0.01, 12);
    expect(s.lrAt(65)).toBeCloseTo(0.001, 12);
    expect(stepDecay({ baseLr: 1, stepSize: 2, gamma: 0.5 }).lrAt(3)).toBe(0.5);
    expect(constant(3e-4).lrAt(12345)).toBe(3e-4);
  });

  test('JSON round trip', () => {
    for (const s of [
      warmupCosine({ baseLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-5, warmupStartLr: 1e-4 }),
      stepDecay({ baseLr: 0.1, stepSize: 30, gamma: 0.1, warmupSteps: 5 }),
      constant(0.01),
    ]) {
      const json = JSON.parse(JSON.stringify(s));
      expect(json).toEqual(s.toJSON());
      const back = scheduleFromJSON(json);
      expect(back.kind).toBe(s.kind);
      for (const step of [0, 3, 5, 10, 47, 60, 109, 110, 500]) expect(back.lrAt(step)).toBe(s.lrAt(step));
    }
    expect(warmupCosine({ baseLr: 1, warmupSteps: 1, totalSteps: 2 }).toJSON()).toEqual({ kind: 'warmup-cosine', baseLr: 1, warmupSteps: 1, totalSteps: 2, minLr: 0, warmupStartLr: 0 });
  });

  test('bad arguments say what was expected', () => {
    expect(() => warmupCosine({ baseLr: 0, warmupSteps: 1, totalSteps: 10 })).toThrow(/baseLr must be a finite number > 0, got 0/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 10, totalSteps: 10 })).toThrow(/totalSteps must be an integer >= 11, got 10/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 1.5, totalSteps: 10 })).toThrow(/warmupSteps must be an integer >= 0/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 1, totalSteps: 10, minLr: 2 })).toThrow(/minLr \(2\) must not exceed baseLr/);
    expect(() => stepDecay({ baseLr: 1, stepSize: 0, gamma: 0.5 })).toThrow(/stepSize must be an integer >= 1/);
    expect(() => stepDecay({ baseLr: 1, stepSize: 1, gamma: 2 })).toThrow(/gamma must be in \(0, 1\]/);
    expect(() => constant(NaN)).toThrow(ArgumentError);
    expect(() => constant(1).lrAt(-1)).toThrow(/step must be a finite number >= 0/);
    expect(() => scheduleFromJSON({ kind: 'onecycle', lr: 1 })).toThrow(ArgumentError);
    expect(() => scheduleFromJSON({ kind: 'onecycle' })).toThrow(/unknown schedule kind 'onecycle'; expected warmup-cosine, step-decay or constant/);
    expect(() => scheduleFromJSON('constant')).toThrow(/expected an object with a kind/);
    expect(() => scheduleFromJSON({ kind: 'step-decay', baseLr: 1, stepSize: 3 })).toThrow(/gamma must be/);
  });
});

/** A stream that records what is written to it. */
function fakeStream(isTTY: boolean, columns = 80) {
  const writes: string[] = [];
  return { writes, isTTY, columns, write(s: string) { writes.push(s); return true; } };
}

describe('progress bar', () => {
  test('durations and plain lines', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(42.4)).toBe('0:42');
    expect(formatDuration(61)).toBe('1:01');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(undefined)).toBe('-:--');
    expect(formatDuration(Infinity)).toBe('-:--');
    const state = { label: 'epoch 1', done: 47, total: 469, stats: { loss: 0.41234, lr: 0.001, imgPerSec: 812.4, acc: 0.5 }, etaSec: 83 };
    expect(formatProgress(state, null)).toBe('epoch 1  10%  47/469 loss 0.4123 lr 1.00e-3 acc 0.5000 812 img/s eta 1:23');
    expect(formatProgress({ ...state, stats: { loss: NaN, imgPerSec: 3.24 }, etaSec: undefined }, null)).toBe('epoch 1  10%  47/469 loss nan 3.2 img/s eta -:--');
    expect(formatProgress({ ...state, done: 469, stats: {}, finished: true, elapsedSec: 125 }, null)).toBe('epoch 1 100% 469/469 in 2:05');
  });

  test('terminal lines have a bar and fit the width', () => {
    const state = { label: 'train', done: 50, total: 100, stats: { loss: 1.5, lr: 0.01 }, etaSec: 10 };
    const wide = formatProgress(state, 100);
    expect(wide).toBe(`train [${'#'.repeat(15)}${'-'.repeat(15)}]  50%  50/100 loss 1.5000 lr 1.00e-2 eta 0:10`);
    const mid = formatProgress(state, 66);
    expect(mid.length).toBe(66);
    expect(mid).toMatch(/^train \[#+-+\]  50%/);
    const narrow = formatProgress(state, 40);
    expect(narrow).not.toContain('[');
    expect(narrow.length).toBe(40);
    expect(formatProgress({ ...state, done: 0 }, 100)).toContain(`[${'-'.repeat(30)}]`);
    expect(formatProgress({ ...state, done: 100 }, 100)).toContain(`[${'#'.repeat(30)}]`);
  });

  test('ETA from the smoothed rate', () => {
    let t = 0;
    const stream = fakeStream(false);
    const bar = new ProgressBar({ total: 100, label: 'e', stream, now: () => t });
    expect(bar.etaSec).toBeUndefined();
    for (let i = 1; i <= 20; ++i) {
      t += 250; // 4 steps/s
      bar.update(i);
    }
    expect(bar.etaSec).toBeCloseTo(80 / 4, 6);
    for (let i = 21; i <= 60; ++i) {
      t += 125; // now 8 steps/s: the estimate follows within a few steps
      bar.update(i);
    }
    expect(bar.etaSec).toBeCloseTo(40 / 8, 1);
  });

  test('off a terminal it prints every tenth and the end', () => {
    let t = 0;
    const stream = fakeStream(false);
    const bar = new ProgressBar({ total: 469, label: 'epoch 1', stream, now: () => t });
    for (let i = 1; i <= 469; ++i) {
      t += 100;
      bar.update(i, { loss: 1 / i, lr: 1e-3, imgPerSec: 80 });
    }
    bar.finish({ loss: 0.25, acc: 0.9 });
    expect(stream.writes).toHaveLength(10);
    expect(stream.writes.every((w) => w.endsWith('\n') && !w.includes('\r') && w.indexOf('\n') === w.length - 1)).toBe(true);
    expect(stream.writes[0]).toMatch(/^epoch 1  10%  47\/469 loss 0\.0213 lr 1\.00e-3 80\.0 img\/s eta 0:42\n$/);
    expect(stream.writes[9]).toBe('epoch 1 100% 469/469 loss 0.2500 acc 0.9000 in 0:47\n');
    // Few steps: one line per step is still at most one per tenth.
    const short = fakeStream(false);
    const b2 = new ProgressBar({ total: 4, stream: short, now: () => t });
    for (let i = 1; i <= 4; ++i) b2.update(i);
    b2.finish();
    expect(short.writes).toHaveLength(4);
  });

  test('on a terminal it redraws one line, at most every 100 ms', () => {
    let t = 0;
    const stream = fakeStream(true, 72);
    const bar = new ProgressBar({ total: 100, label: 'train', stream, now: () => t });
    for (let i = 1; i <= 100; ++i) {
      t += 20;
      bar.update(i, { loss: 0.5 });
    }
    bar.finish();
    expect(stream.writes.length).toBeGreaterThan(15);
    expect(stream.writes.length).toBeLessThan(25);
    for (const w of stream.writes) {
      expect(w.startsWith('\r')).toBe(true);
      const visible = w.replace('\r', '').replace('\x1b[K', '').replace('\n', '');
      expect(visible.length).toBeLessThan(72);
    }
    expect(stream.writes.at(-1)).toMatch(/^\rtrain \[#{10,}\] 100% 100\/100 loss 0\.5000 in 0:02\x1b\[K\n$/);
    expect(stream.writes.slice(0, -1).every((w) => !w.includes('\n'))).toBe(true);
  });

  test('bad arguments', () => {
    expect(() => new ProgressBar({ total: 0 })).toThrow(/total must be an integer >= 1, got 0/);
    const bar = new ProgressBar({ total: 3, stream: fakeStream(false) });
    expect(() => bar.update(NaN)).toThrow(ArgumentError);
  });
});

describe('metrics log', () => {
  test('records round trip, non-finite numbers included; appends', () => {
    const file = path.join(dir, 'run', 'metrics.jsonl');
    {
      using log = new MetricsLog(file);
      log.write({ epoch: 1, step: 469, split: 'train', loss: 0.41, lr: 1e-3 });
      log.write({ epoch: 1, step: 469, split: 'test', loss: 0.38, acc: 0.9012 });
      // Written through at once: a crash after this point keeps both lines.
      expect(fs.readFileSync(file, 'utf8').split('\n')).toHaveLength(3);
    }
    const log = new MetricsLog(file);
    log.write({ epoch: 2, step: 938, split: 'train', loss: NaN, gradNorm: Infinity, note: 'NaNs' });
    log.close();
    expect(() => log.write({ epoch: 3 })).toThrow(/closed/);
    expect(fs.readFileSync(file, 'utf8').split('\n')[0]).toBe('{"epoch":1,"step":469,"split":"train","loss":0.41,"lr":0.001}');
    const back = readMetrics(file);
    expect(back).toHaveLength(3);
    expect(back[1]).toEqual({ epoch: 1, step: 469, split: 'test', loss: 0.38, acc: 0.9012 });
    expect(back[2].loss).toBeNaN();
    expect(back[2].gradNorm).toBe(Infinity);
    expect(back[2].note).toBe('NaNs');
    const fresh = new MetricsLog(file, { truncate: true });
    fresh.close();
    expect(readMetrics(file)).toEqual([]);
  });

  test('a corrupt line is a FormatError naming its number', () => {
    const file = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(file, '{"epoch":1,"loss":0.5}\n\n{"epoch":2,"loss":\n');
    expect(() => readMetrics(file)).toThrow(FormatError);
    expect(() => readMetrics(file)).toThrow(/line 3 is not valid JSON/);
    fs.writeFileSync(file, '{"epoch":1}\n[1,2]\n');
    expect(() => readMetrics(file)).toThrow(/line 2 is not a JSON object/);
  });
});

describe('plotCurves', () => {
  const epochs = Array.from({ length: 12 }, (_, i) => i + 1);
  const series = [
    {
      title: 'Loss', xLabel: 'epoch', yLabel: 'cross-entropy', lines: [
        { name: 'train', points: epochs.map((e) => [e, 2 * Math.exp(-e / 4)] as [number, number]) },
        { name: 'test', points: epochs.map((e) => [e, e === 5 ? NaN : 2.2 * Math.exp(-e / 5)] as [number, number]) },
      ],
    },
    { title: 'Test accuracy', xLabel: 'epoch', lines: [{ name: 'test', points: epochs.map((e) => [e, 1 - Math.exp(-e / 3)] as [number, number]) }] },
  ];

  test('writes a PNG of the expected size with curves, axes and legends', async () => {
    const file = path.join(dir, 'curves.png');
    expect(await plotCurves(file, series)).toEqual({ width: 960, height: 360 });
    const meta = await sharp(file).metadata();
    expect(meta.format).toBe('png');
    expect([meta.width, meta.height]).toEqual([960, 360]);
    const stats = await sharp(file).stats();
    expect(stats.isOpaque).toBe(true);
    // Not one flat colour: every channel spans dark text to white background, and the curves are coloured.
    for (const c of stats.channels.slice(0, 3)) expect(c.max - c.min).toBeGreaterThan(150);
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    let blue = 0, orange = 0;
    for (let i = 0; i < info.width * info.height * 3; i += 3) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (b > 150 && r < 80) blue++;
      if (r > 200 && g > 100 && g < 160 && b < 60) orange++;
    }
    expect(blue).toBeGreaterThan(200);
    expect(orange).toBeGreaterThan(200);
    const { svg } = curvesSvg(series);
    expect(svg).toContain('>cross-entropy</text>');
    expect(svg).toContain('>Test accuracy</text>');
    expect(svg.match(/<polyline/g)).toHaveLength(4); // the NaN splits the test loss in two
  });

  test('a single point, non-finite values and custom sizes', async () => {
    const file = path.join(dir, 'one.png');
    const one = [{ title: 'one', xLabel: 'step', lines: [{ name: 'a <&> b', points: [[3, 0.5], [4, Infinity], [NaN, 1]] as [number, number][] }] }];
    expect(await plotCurves(file, one, { width: 300, height: 200 })).toEqual({ width: 300, height: 200 });
    const meta = await sharp(file).metadata();
    expect([meta.width, meta.height]).toEqual([300, 200]);
    const { svg } = curvesSvg(one);
    expect(svg).toContain('<circle');
    expect(svg).toContain('a &lt;&amp;&gt; b');
  });

  test('empty series are an error saying so', async () => {
    await expect(plotCurves(path.join(dir, 'x.png'), [])).rejects.toThrow(/no series to plot/);
    await expect(plotCurves(path.join(dir, 'x.png'), [{ title: 'loss', xLabel: 'epoch', lines: [] }])).rejects.toThrow(/series 'loss' is empty: it has no lines/);
    await expect(plotCurves(path.join(dir, 'x.png'), [{ title: 'loss', xLabel: 'epoch', lines: [{ name: 'train', points: [[1, NaN]] }] }]))
      .rejects.toThrow(/series 'loss' is empty: none of its lines has a finite point/);
    expect(() => curvesSvg(series, { width: 10 })).toThrow(/width must be an integer in \[160, 4096\]/);
    expect(fs.existsSync(path.join(dir, 'x.png'))).toBe(false);
  });
});
