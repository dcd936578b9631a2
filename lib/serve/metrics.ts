/**
 * Counters, gauges and histograms rendered in the Prometheus text format
 * (version 0.0.4), enough for the server's /metrics without a dependency.
 */

type Labels = Record<string, string>;

function labelKey(names: readonly string[], labels: Labels): string {
  return JSON.stringify(names.map((n) => labels[n] ?? ''));
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function renderLabels(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const pairs = names.map((n, i) => `${n}="${escapeLabel(values[i])}"`);
  if (extra) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

function formatNumber(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return Number.isNaN(v) ? 'NaN' : String(v);
}

abstract class Metric {
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {}
  abstract readonly type: string;
  abstract samples(): string[];
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()].join('\n');
  }
}

export class Counter extends Metric {
  readonly type = 'counter';
  private values = new Map<string, number>();
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(this.labelNames, labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(this.labelNames, labels)) ?? 0;
  }
  samples(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${renderLabels(this.labelNames, JSON.parse(k))} ${formatNumber(v)}`);
  }
}

/** A gauge set directly, or read from a callback at scrape time. */
export class Gauge extends Metric {
  readonly type = 'gauge';
  private values = new Map<string, number | (() => number)>();
  set(labels: Labels, value: number | (() => number)): void {
    this.values.set(labelKey(this.labelNames, labels), value);
  }
  samples(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${renderLabels(this.labelNames, JSON.parse(k))} ${formatNumber(typeof v === 'function' ? v() : v)}`);
  }
}

export class Histogram extends Metric {
  readonly type = 'histogram';
  private series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(name: string, help: string, labelNames: readonly string[], readonly buckets: readonly number[]) {
    super(name, help, labelNames);
  }
  observe(labels: Labels, value: number): void {
    const k = labelKey(this.labelNames, labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; ++i) if (value <= this.buckets[i]) s.counts[i] += 1;
    s.sum += value;
    s.count += 1;
  }
  /** Sum and count of one series (benchmarks read the mean batch time from them). */
  stats(labels: Labels = {}): { sum: number; count: number } {
    const s = this.series.get(labelKey(this.labelNames, labels));
    return { sum: s?.sum ?? 0, count: s?.count ?? 0 };
  }
  samples(): string[] {
    const out: string[] = [];
    for (const [k, s] of this.series) {
      const values = JSON.parse(k) as string[];
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${renderLabels(this.labelNames, values, ['le', formatNumber(b)])} ${s.counts[i]}`));
      out.push(`${this.name}_bucket${renderLabels(this.labelNames, values, ['le', '+Inf'])} ${s.count}`);
      out.push(`${this.name}_sum${renderLabels(this.labelNames, values)} ${formatNumber(s.sum)}`);
      out.push(`${this.name}_count${renderLabels(this.labelNames, values)} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  private metrics: Metric[] = [];
  register<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  /** The text exposition format, served as `text/plain; version=0.0.4`. */
  render(): string {
    return `${this.metrics.map((m) => m.render()).join('\n')}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
