/**
 * Training metrics as JSON Lines: one object per line, e.g.
 * {"epoch":1,"step":469,"split":"train","loss":0.41,"lr":0.001}.
 *
 * JSON has no NaN or Infinity, and a diverging loss is worth keeping, so
 * non-finite numbers are written as the strings "NaN", "Infinity" and
 * "-Infinity" and read back as numbers.
 */
import '../polyfill';
import * as fs from 'fs';
import * as path from 'path';
import { ArgumentError, FormatError } from '../errors';

export interface MetricsRecord {
  epoch?: number;
  step?: number;
  split?: string;
  [name: string]: unknown;
}

const NON_FINITE = new Map<string, number>([['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]]);

export class MetricsLog {
  readonly path: string;
  private fd: number | null;

  /** Appends to `file` (created with its folder if missing); `truncate: true` starts it afresh. */
  constructor(file: string, options: { truncate?: boolean } = {}) {
    if (typeof file !== 'string' || file === '') throw new ArgumentError(`MetricsLog: expected a file path, got ${String(file)}`);
    this.path = file;
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, options.truncate ? 'w' : 'a');
  }

  /**
   * Appends one record. The write is synchronous and unbuffered, so what was
   * written survives the process crashing later.
   */
  write(record: MetricsRecord): void {
    if (this.fd === null) throw new ArgumentError(`MetricsLog: ${this.path} is closed`);
    if (record === null || typeof record !== 'object' || Array.isArray(record)) throw new ArgumentError('MetricsLog.write: expected a plain object');
    const line = JSON.stringify(record, (_key, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
    fs.writeSync(this.fd, `${line}\n`);
  }

  close(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
  }

  [Symbol.dispose](): void { this.close(); }
}

/** All records of a metrics file, in order; blank lines are skipped. */
export function readMetrics(file: string): MetricsRecord[] {
  const text = fs.readFileSync(file, 'utf8');
  const records: MetricsRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; ++i) {
    const line = lines[i].trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line, (_key, v) => (typeof v === 'string' && NON_FINITE.has(v) ? NON_FINITE.get(v) : v));
    } catch (err) {
      throw new FormatError(`${file}: line ${i + 1} is not valid JSON (${(err as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new FormatError(`${file}: line ${i + 1} is not a JSON object`);
    }
    records.push(value as MetricsRecord);
  }
  return records;
}
