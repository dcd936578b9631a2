/**
 * Modules own parameters (tensors) under the names of the released
 * checkpoints and nest into trees; the dotted path of a parameter is its
 * state-dict key.
 */
import { DType } from '../dtype';
import { ArgumentError, StateDictError } from '../errors';
import { Tensor } from '../tensor';
import { keep } from '../scope';

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  mismatched: { name: string; expected: number[]; got: number[] }[];
}

export abstract class Module {
  #params = new Map<string, Tensor>();
  #children = new Map<string, Module>();
  #training = false;

  /** Registers (or replaces) a parameter; the module owns it from now on. */
  protected param(name: string, t: Tensor): Tensor {
    this.#params.get(name)?.dispose();
    this.#params.set(name, keep(t));
    // Parameters are leaves of the recorded graph; eval-mode forwards run under noGrad.
    if (t.isLeaf && (t.dtype === 'f32' || t.dtype === 'bf16' || t.dtype === 'f16')) t.requiresGrad = true;
    return t;
  }

  /** A parameter of this module (not of its children). */
  protected p(name: string): Tensor {
    const t = this.#params.get(name);
    if (!t) throw new ArgumentError(`${this.constructor.name}: no parameter '${name}'`);
    return t;
  }

  protected child<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** Every parameter with its dotted name, in registration order (children after own). */
  *namedParameters(prefix = ''): Generator<[string, Tensor]> {
    for (const [k, t] of this.#params) yield [prefix + k, t];
    for (const [k, m] of this.#children) yield* m.namedParameters(`${prefix}${k}.`);
  }

  /** Number of scalar parameters. */
  parameterCount(): number {
    let n = 0;
    for (const [, t] of this.namedParameters()) n += t.size;
    return n;
  }

  /** Drops every parameter's gradient (the next backward starts from zero). */
  zeroGrad(): void {
    for (const [, t] of this.namedParameters()) {
      t.grad?.dispose();
      t.grad = null;
    }
  }

  get training(): boolean { return this.#training; }
  train(on = true): this {
    this.#training = on;
    for (const m of this.#children.values()) m.train(on);
    this.onModeChange();
    return this;
  }
  eval(): this { return this.train(false); }

  /** Called after train()/eval() and after loading weights: drop derived state (packed weights). */
  protected onModeChange(): void {}

  /**
   * Copies tensors from `state` into the parameters with the same names,
   * converting dtype and device to the parameter's. Strict (default): any
   * missing key, unexpected key or shape mismatch throws a StateDictError
   * listing all of them, and nothing is loaded. Non-strict: loads what fits
   * and returns the report.
   */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, options: { strict?: boolean } = {}): LoadReport {
    const strict = options.strict ?? true;
    const entries = state instanceof Map ? state : new Map(Object.entries(state));
    const params = new Map(this.namedParameters());
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
    for (const name of params.keys()) if (!entries.has(name)) report.missing.push(name);
    for (const [name, t] of entries) {
      const p = params.get(name);
      if (!p) report.unexpected.push(name);
      else if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
        report.mismatched.push({ name, expected: [...p.shape], got: [...t.shape] });
      }
    }
    const bad = report.missing.length + report.unexpected.length + report.mismatched.length;
    if (strict && bad > 0) {
      const lines = [`loadStateDict: the state dict does not fit ${this.constructor.name}`];
      const list = (title: string, xs: string[]) => {
        if (xs.length) lines.push(`  ${title} (${xs.length}): ${xs.slice(0, 20).join(', ')}${xs.length > 20 ? ', …' : ''}`);
      };
      list('missing keys', report.missing);
      list('unexpected keys', report.unexpected);
      list('shape mismatches', report.mismatched.map((m) => `${m.name} expected [${m.expected}] got [${m.got}]`));
      throw new StateDictError(lines.join('\n'), report);
    }
    const skip = new Set([...report.unexpected, ...report.mismatched.map((m) => m.name)]);
    for (const [name, t] of entries) {
      if (skip.has(name)) continue;
      const p = params.get(name)!;
      // In place: optimizers and other holders of the parameter keep seeing it.
      const src = t.to({ dtype: p.dtype, device: p.device });
      try {
        p.assign(src);
      } finally {
        src.dispose();
      }
    }
    this.onModeChange();
    return report;
  }

  /** Replaces the parameter at a dotted path. */
  private replaceParam(path: string, t: Tensor): void {
    const dot = path.indexOf('.');
    if (dot >= 0 && this.#children.has(path.slice(0, dot))) {
      this.#children.get(path.slice(0, dot))!.replaceParam(path.slice(dot + 1), t);
      return;
    }
    if (!this.#params.has(path)) throw new ArgumentError(`no parameter '${path}'`);
    this.param(path, t);
  }

  /** Converts every parameter (e.g. to 'bf16' for inference, or to another device). */
  to(target: DType | string | { dtype?: DType; device?: string }): this {
    for (const [name, t] of [...this.namedParameters()]) this.replaceParam(name, t.to(target as never));
    this.onModeChange();
    return this;
  }

  /** Releases every parameter and derived tensor. */
  dispose(): void {
    for (const t of this.#params.values()) t.dispose();
    this.#params.clear();
    for (const m of this.#children.values()) m.dispose();
    this.onModeChange();
  }
  [Symbol.dispose](): void { this.dispose(); }
}
