/**
 * Training curves as a PNG: one panel per series (say, loss per epoch on the
 * left, accuracy on the right), drawn as SVG and rasterized by sharp (librsvg).
 */
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { ArgumentError } from '../errors';

export interface PlotLine {
  name: string;
  /** [x, y] pairs; points with NaN or an infinity are skipped (the line breaks there). */
  points: readonly (readonly [number, number])[];
}

export interface PlotSeries {
  title: string;
  xLabel: string;
  yLabel?: string;
  lines: readonly PlotLine[];
}

export interface PlotOptions {
  /** Size of one panel in pixels; the image is panels x width by height. */
  width?: number;
  height?: number;
}

// matplotlib's tab10: distinct, and readable on white.
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const FONT = 'DejaVu Sans, Arial, Helvetica, sans-serif';
const MARGIN = { left: 64, right: 18, top: 34, bottom: 50 };
/** Lines with at most this many points also get a marker at each point. */
const MARKER_MAX_POINTS = 30;

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A 1, 2 or 5 times a power of ten near range/target. */
function niceStep(range: number, target: number): number {
  const raw = range / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

interface Axis { lo: number; hi: number; step: number; ticks: number[] }

/** An axis that covers [min, max] and starts and ends on a tick. */
export function niceAxis(min: number, max: number, target = 5, integer = false): Axis {
  if (max - min <= Math.abs(max) * 1e-12) {
    // One value (one point, or a flat line): centre it in a small range.
    const d = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= d;
    max += d;
  }
  let step = niceStep(max - min, target);
  if (integer) step = Math.max(step, 1);
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; ++i) ticks.push(lo + i * step);
  return { lo, hi, step, ticks };
}

/** A tick label with as many decimals as the step needs. */
export function formatTick(v: number, step: number): string {
  if (Math.abs(v) < step * 1e-9) v = 0;
  const big = Math.max(Math.abs(v), step);
  if (big >= 1e6 || step < 1e-4) return v.toExponential(1);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(decimals);
}

function checkSeries(series: readonly PlotSeries[]): void {
  if (!Array.isArray(series) || series.length === 0) throw new ArgumentError('plotCurves: no series to plot; expected at least one { title, xLabel, lines }');
  for (const s of series) {
    if (!s || typeof s.title !== 'string' || typeof s.xLabel !== 'string' || !Array.isArray(s.lines)) {
      throw new ArgumentError('plotCurves: each series must be { title: string, xLabel: string, lines: { name, points }[] }');
    }
    if (s.lines.length === 0) throw new ArgumentError(`plotCurves: series '${s.title}' is empty: it has no lines`);
    let finite = 0;
    for (const l of s.lines) {
      if (!l || typeof l.name !== 'string' || !Array.isArray(l.points)) throw new ArgumentError(`plotCurves: series '${s.title}': each line must be { name: string, points: [x, y][] }`);
      for (const p of l.points) {
        if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'number' || typeof p[1] !== 'number') {
          throw new ArgumentError(`plotCurves: series '${s.title}', line '${l.name}': points must be [x, y] pairs of numbers`);
        }
        if (Number.isFinite(p[0]) && Number.isFinite(p[1])) finite += 1;
      }
    }
    if (finite === 0) throw new ArgumentError(`plotCurves: series '${s.title}' is empty: none of its lines has a finite point`);
  }
}

function panelSvg(s: PlotSeries, ox: number, w: number, h: number, colorOf: (name: string) => string): string {
  const x0 = ox + MARGIN.left, x1 = ox + w - MARGIN.right;
  const y0 = MARGIN.top, y1 = h - MARGIN.bottom;
  const finite = s.lines.flatMap((l) => l.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])));
  // Loops, not Math.min(...xs): a per-step curve can have more points than a call takes arguments.
  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity, integerX = true;
  for (const [x, y] of finite) {
    xmin = Math.min(xmin, x); xmax = Math.max(xmax, x);
    ymin = Math.min(ymin, y); ymax = Math.max(ymax, y);
    integerX &&= Number.isInteger(x);
  }
  const xa = niceAxis(xmin, xmax, Math.max(2, Math.round((x1 - x0) / 80)), integerX);
  const ya = niceAxis(ymin, ymax, Math.max(2, Math.round((y1 - y0) / 50)));
  const px = (x: number) => x0 + ((x - xa.lo) / (xa.hi - xa.lo)) * (x1 - x0);
  const py = (y: number) => y1 - ((y - ya.lo) / (ya.hi - ya.lo)) * (y1 - y0);
  const f = (v: number) => v.toFixed(2);
  const out: string[] = [];
  out.push(`<text x="${f((x0 + x1) / 2)}" y="${MARGIN.top - 12}" font-size="15" font-weight="bold" text-anchor="middle">${escapeXml(s.title)}</text>`);
  for (const t of xa.ticks) {
    const x = f(px(t));
    out.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y1}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${x}" y1="${y1}" x2="${x}" y2="${y1 + 5}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${y1 + 19}" font-size="12" text-anchor="middle">${formatTick(t, xa.step)}</text>`);
  }
  for (const t of ya.ticks) {
    const y = f(py(t));
    out.push(`<line x1="${x0}" y1="${y}" x2="${x1}" y2="${y}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${x0 - 5}" y1="${y}" x2="${x0}" y2="${y}" stroke="#333"/>`);
    out.push(`<text x="${x0 - 8}" y="${y}" font-size="12" text-anchor="end" dominant-baseline="middle">${formatTick(t, ya.step)}</text>`);
  }
  out.push(`<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${f((x0 + x1) / 2)}" y="${h - 12}" font-size="13" text-anchor="middle">${escapeXml(s.xLabel)}</text>`);
  if (s.yLabel) {
    const cx = ox + 16, cy = (y0 + y1) / 2;
    out.push(`<text x="${cx}" y="${f(cy)}" font-size="13" text-anchor="middle" transform="rotate(-90 ${cx} ${f(cy)})">${escapeXml(s.yLabel)}</text>`);
  }
  const pixels: [number, number][] = [];
  for (const l of s.lines) {
    const color = colorOf(l.name);
    let segment: string[] = [];
    const flush = () => {
      if (segment.length > 1) out.push(`<polyline points="${segment.join(' ')}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`);
      segment = [];
    };
    const ok = l.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    for (const p of l.points) {
      if (!Number.isFinite(p[0]) || !Number.isFinite(p[1])) {
        flush();
        continue;
      }
      const q: [number, number] = [px(p[0]), py(p[1])];
      pixels.push(q);
      segment.push(`${f(q[0])},${f(q[1])}`);
    }
    flush();
    if (ok.length <= MARKER_MAX_POINTS) {
      for (const p of ok) out.push(`<circle cx="${f(px(p[0]))}" cy="${f(py(p[1]))}" r="3" fill="${color}"/>`);
    }
  }
  // Legend in the corner of the plot that covers the fewest points.
  const names = [...new Set(s.lines.map((l) => l.name))];
  const lw = 36 + 7.5 * Math.max(...names.map((n) => n.length)), lh = 8 + 18 * names.length;
  const corners: [number, number][] = [[x1 - lw - 8, y0 + 8], [x0 + 8, y0 + 8], [x1 - lw - 8, y1 - lh - 8], [x0 + 8, y1 - lh - 8]];
  const covered = ([cx, cy]: [number, number]) => pixels.filter(([x, y]) => x >= cx - 4 && x <= cx + lw + 4 && y >= cy - 4 && y <= cy + lh + 4).length;
  let [lx, ly] = corners[0];
  let least = covered(corners[0]);
  for (const c of corners.slice(1)) {
    const n = covered(c);
    if (n < least) [least, lx, ly] = [n, c[0], c[1]];
  }
  out.push(`<rect x="${f(lx)}" y="${f(ly)}" width="${f(lw)}" height="${lh}" fill="#ffffff" fill-opacity="0.85" stroke="#bbbbbb"/>`);
  names.forEach((n, i) => {
    const y = ly + 4 + 18 * i + 9;
    out.push(`<line x1="${f(lx + 6)}" y1="${f(y)}" x2="${f(lx + 26)}" y2="${f(y)}" stroke="${colorOf(n)}" stroke-width="3"/>`);
    out.push(`<text x="${f(lx + 32)}" y="${f(y)}" font-size="12" dominant-baseline="middle">${escapeXml(n)}</text>`);
  });
  return out.join('\n');
}

/** The figure as an SVG document (what plotCurves rasterizes). */
export function curvesSvg(series: readonly PlotSeries[], options: PlotOptions = {}): { svg: string; width: number; height: number } {
  checkSeries(series);
  const w = options.width ?? 480, h = options.height ?? 360;
  for (const [name, v] of [['width', w], ['height', h]] as const) {
    if (!Number.isInteger(v) || v < 160 || v > 4096) throw new ArgumentError(`plotCurves: ${name} must be an integer in [160, 4096], got ${String(v)}`);
  }
  // One colour per line name across the figure: a name shared by two panels keeps its colour.
  const colors = new Map<string, string>();
  const colorOf = (name: string) => {
    if (!colors.has(name)) colors.set(name, COLORS[colors.size % COLORS.length]);
    return colors.get(name)!;
  };
  const width = w * series.length;
  const panels = series.map((s, i) => panelSvg(s, i * w, w, h, colorOf));
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}" font-family="${FONT}" fill="#222">
<rect width="${width}" height="${h}" fill="#ffffff"/>
${panels.join('\n')}
</svg>
`;
  return { svg, width, height: h };
}

/** Writes the curves to a PNG at `file`, one panel per series, side by side. */
export async function plotCurves(file: string, series: readonly PlotSeries[], options: PlotOptions = {}): Promise<{ width: number; height: number }> {
  if (typeof file !== 'string' || file === '') throw new ArgumentError(`plotCurves: expected a file path, got ${String(file)}`);
  const { svg, width, height } = curvesSvg(series, options);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  await sharp(Buffer.from(svg), { density: 72 }).png().toFile(file);
  return { width, height };
}
