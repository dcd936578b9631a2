/**
 * A progress bar for a training epoch. On a terminal it redraws one line; on
 * anything else (CI logs, pipes, files) it prints a plain line at every tenth
 * of the epoch and at the end, so logs stay short and readable.
 */
import { ArgumentError } from '../errors';

/** Numbers shown after the counts: loss, lr and imgPerSec get their own formats, others are printed as `name value`. */
export interface ProgressStats {
  loss?: number;
  lr?: number;
  imgPerSec?: number;
  [name: string]: number | undefined;
}

export interface ProgressState {
  label: string;
  done: number;
  total: number;
  stats: ProgressStats;
  /** Seconds left; undefined while unknown. */
  etaSec?: number;
  /** Seconds taken; shown instead of the ETA once finished. */
  elapsedSec?: number;
  finished?: boolean;
}

/** What ProgressBar writes to: process.stderr, or anything with write() (isTTY and columns as a tty.WriteStream has them). */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  total: number;
  label?: string;
  stream?: ProgressStream;
  /** Milliseconds clock; tests pass a fake one. */
  now?: () => number;
}

/** m:ss, or h:mm:ss from an hour up; `-:--` when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(4);
}

function formatRate(v: number): string {
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? String(Math.round(v)) : v.toFixed(1);
}

function statsText(stats: ProgressStats): string[] {
  const parts: string[] = [];
  if (stats.loss !== undefined) parts.push(`loss ${formatValue(stats.loss)}`);
  if (stats.lr !== undefined) parts.push(`lr ${Number.isFinite(stats.lr) ? stats.lr.toExponential(2) : formatValue(stats.lr)}`);
  for (const [name, v] of Object.entries(stats)) {
    if (name === 'loss' || name === 'lr' || name === 'imgPerSec' || v === undefined) continue;
    parts.push(`${name} ${formatValue(v)}`);
  }
  if (stats.imgPerSec !== undefined) parts.push(`${formatRate(stats.imgPerSec)} img/s`);
  return parts;
}

/**
 * One progress line. With a width (a terminal's columns) it has a bar sized to
 * fill the line and never exceeds the width; with null it is a plain log line.
 */
export function formatProgress(state: ProgressState, width: number | null): string {
  const total = Math.max(state.total, 0);
  const done = Math.min(Math.max(state.done, 0), total);
  const frac = total > 0 ? done / total : 1;
  const pct = `${String(Math.floor(frac * 100)).padStart(3)}%`;
  const count = `${String(done).padStart(String(total).length)}/${total}`;
  const time = state.finished ? `in ${formatDuration(state.elapsedSec)}` : `eta ${formatDuration(state.etaSec)}`;
  const tail = [pct, count, ...statsText(state.stats), time].join(' ');
  const label = state.label ? `${state.label} ` : '';
  if (width === null) return `${label}${tail}`;
  // The bar gets what the text leaves, up to 30 cells; under 10 it is dropped.
  const room = width - label.length - tail.length - 3;
  const cells = Math.min(30, room);
  let line: string;
  if (cells >= 10) {
    const filled = Math.round(frac * cells);
    line = `${label}[${'#'.repeat(filled)}${'-'.repeat(cells - filled)}] ${tail}`;
  } else {
    line = `${label}${tail}`;
  }
  return line.length > width ? line.slice(0, Math.max(0, width)) : line;
}

/** Weight of the newest rate sample in the smoothed rate behind the ETA. */
const RATE_SMOOTHING = 0.2;
/** Fewest milliseconds between two terminal redraws (the last one always draws). */
const TTY_INTERVAL_MS = 100;

export class ProgressBar {
  readonly total: number;
  readonly label: string;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly tty: boolean;
  private readonly start: number;
  private lastDone = 0;
  // Where the last rate sample ended: several updates within one clock tick count as one sample.
  private sampleDone = 0;
  private sampleTime: number;
  private rate: number | undefined; // steps per second, smoothed
  private stats: ProgressStats = {};
  private lastTenth = 0;
  private lastDraw = -Infinity;
  private finished = false;

  constructor(options: ProgressOptions) {
    if (options === null || typeof options !== 'object') throw new ArgumentError('ProgressBar: expected an options object { total, label?, stream? }');
    const { total } = options;
    if (typeof total !== 'number' || !Number.isInteger(total) || total < 1) throw new ArgumentError(`ProgressBar: total must be an integer >= 1, got ${String(total)}`);
    this.total = total;
    this.label = options.label ?? '';
    this.stream = options.stream ?? process.stderr;
    this.now = options.now ?? (() => performance.now());
    this.tty = this.stream.isTTY === true;
    this.start = this.now();
    this.sampleTime = this.start;
  }

  /** Seconds left at the smoothed rate; undefined before the first measured step. */
  get etaSec(): number | undefined {
    return this.rate ? Math.max(0, this.total - this.lastDone) / this.rate : undefined;
  }

  /** `done` steps of `total` are complete. */
  update(done: number, stats: ProgressStats = {}): void {
    if (this.finished) return;
    if (typeof done !== 'number' || !Number.isFinite(done) || done < 0) throw new ArgumentError(`ProgressBar.update: done must be a finite number >= 0, got ${String(done)}`);
    const t = this.now();
    const dt = (t - this.sampleTime) / 1000;
    if (done < this.sampleDone) {
      this.sampleDone = done;
      this.sampleTime = t;
    } else if (done > this.sampleDone && dt > 0) {
      const r = (done - this.sampleDone) / dt;
      this.rate = this.rate === undefined ? r : this.rate + RATE_SMOOTHING * (r - this.rate);
      this.sampleDone = done;
      this.sampleTime = t;
    }
    this.lastDone = done;
    this.stats = stats;
    const state = this.state(done, false);
    if (this.tty) {
      if (t - this.lastDraw < TTY_INTERVAL_MS && done < this.total) return;
      this.lastDraw = t;
      this.stream.write(`\r${formatProgress(state, this.width())}\x1b[K`);
    } else {
      // The end is printed by finish(), so only the tenths before it here.
      const tenth = Math.floor((Math.min(done, this.total) * 10) / this.total);
      if (tenth > this.lastTenth && tenth < 10) {
        this.lastTenth = tenth;
        this.stream.write(`${formatProgress(state, null)}\n`);
      }
    }
  }

  /** The last line: the summary's numbers (the last update's when none are given) and the time taken. */
  finish(summary?: ProgressStats): void {
    if (this.finished) return;
    this.finished = true;
    if (summary) this.stats = summary;
    const line = this.tty ? `\r${formatProgress(this.state(this.lastDone, true), this.width())}\x1b[K\n` : `${formatProgress(this.state(this.lastDone, true), null)}\n`;
    this.stream.write(line);
  }

  // One column short of the terminal: a line that fills it exactly wraps on some terminals.
  private width(): number {
    return (this.stream.columns && this.stream.columns > 1 ? this.stream.columns : 80) - 1;
  }

  private state(done: number, finished: boolean): ProgressState {
    return {
      label: this.label,
      done,
      total: this.total,
      stats: this.stats,
      etaSec: this.etaSec,
      elapsedSec: (this.now() - this.start) / 1000,
      finished,
    };
  }
}
