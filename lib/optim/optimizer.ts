/**
 * The optimizer base: parameters by name, per-parameter state tensors, the
 * weight-decay exclusion rule, and a state dict for checkpoints. Updates run
 * in place on the parameters (no new tensors per step).
 */
import '../autograd';  // registers the recording hooks on Tensor
import { zeros } from '../creation';
import { ArgumentError, StateDictError } from '../errors';
import { noGrad } from '../autograd/grad-mode';
import { keep } from '../scope';
import { Tensor } from '../tensor';

export type NamedParameters = Iterable<[string, Tensor]>;

/**
 * Names that get no weight decay by default: LayerNorm weights and biases,
 * every bias, the LayerScale gammas and the class token.
 */
export const DEFAULT_NO_DECAY: readonly (string | RegExp)[] = [/(^|\.)norm\d*\./, /(^|\.)bias$/, /(^|\.)gamma_\d+$/, /(^|\.)cls_token$/];

/** A name pattern: a RegExp, or a string with `*` wildcards matched against the whole name or any dotted part of it. */
export function matchesPattern(name: string, pattern: string | RegExp): boolean {
  if (pattern instanceof RegExp) return pattern.test(name);
  const re = new RegExp(`(^|\\.)${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}($|\\.)`);
  return re.test(name);
}

export interface ParamSlot {
  name: string;
  param: Tensor;
  decay: boolean;
  step: number;
  state: Map<string, Tensor>;
}

export interface OptimizerState {
  /** Scalars: lr, hyper-parameters, per-parameter step counts. */
  meta: Record<string, unknown>;
  /** State tensors as `<param name>.<state name>` (e.g. `blocks.0.attn.qkv.weight.exp_avg`). */
  tensors: Map<string, Tensor>;
}

/** What a loss-scaled step passes to Optimizer.step (GradScaler makes it). */
export interface StepOptions {
  /**
   * The found-inf flag of each device (one f32 element, 1 when a gradient
   * there held inf or NaN; see ops unscaleGrads). The kernels read it and
   * change nothing when it is set, so the host never waits for it; the step
   * then always runs fused (the same bits as unfused).
   */
  foundInf?: ReadonlyMap<string, Tensor>;
}

/** The parameters of one device that have gradients, as a fused step updates them. */
interface DeviceGroup { slots: ParamSlot[]; grads: Tensor[] }

export abstract class Optimizer {
  protected readonly slots: ParamSlot[];
  /** The learning rate of the next step (schedules set it every step). */
  lr: number;
  /**
   * Whether step() updates all parameters of a device in one multi-tensor
   * kernel call (the default) or one call per parameter; the results are the same bits.
   */
  readonly fused: boolean;
  abstract readonly kind: string;

  protected constructor(params: NamedParameters, lr: number, noDecay: readonly (string | RegExp)[] | undefined, fused: boolean | undefined = true) {
    if (!(typeof lr === 'number' && lr >= 0 && Number.isFinite(lr))) throw new ArgumentError(`optimizer: lr must be a non-negative number, got ${String(lr)}`);
    if (params === null || typeof params !== 'object' || !(Symbol.iterator in Object(params))) {
      throw new ArgumentError('optimizer: expected the named parameters, e.g. model.namedParameters()');
    }
    const patterns = noDecay ?? DEFAULT_NO_DECAY;
    if (!Array.isArray(patterns)) throw new ArgumentError('optimizer: noDecay must be an array of name patterns');
    this.slots = [];
    const seen = new Set<string>();
    for (const entry of params) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !(entry[1] instanceof Tensor)) {
        throw new ArgumentError('optimizer: each parameter must be a [name, Tensor] pair (use model.namedParameters())');
      }
      const [name, param] = entry;
      if (seen.has(name)) throw new ArgumentError(`optimizer: parameter '${name}' is listed twice`);
      seen.add(name);
      if (param.dtype !== 'f32') throw new ArgumentError(`optimizer: parameter '${name}' is ${param.describe()}; training updates f32 parameters`);
      if (!param.isContiguous) throw new ArgumentError(`optimizer: parameter '${name}' is not contiguous; it must own its storage to be updated in place`);
      this.slots.push({ name, param, decay: !patterns.some((p) => matchesPattern(name, p)), step: 0, state: new Map() });
    }
    if (!this.slots.length) throw new ArgumentError('optimizer: no parameters given');
    if (typeof fused !== 'boolean') throw new ArgumentError(`optimizer: fused must be a boolean, got ${String(fused)}`);
    this.lr = lr;
    this.fused = fused;
  }

  /** Names of the parameters that get weight decay. */
  get decayed(): string[] { return this.slots.filter((s) => s.decay).map((s) => s.name); }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const s of this.slots) {
      s.param.grad?.dispose();
      s.param.grad = null;
    }
  }

  /** The parameters with gradients, by the parameter's device (a gradient elsewhere is an error of the update, never a copy). */
  #groups(op: string): Map<string, DeviceGroup> {
    const groups = new Map<string, DeviceGroup>();
    for (const s of this.slots) {
      const g = s.param.grad;
      if (!g) continue;
      if (s.param.isDisposed) throw new ArgumentError(`${this.kind}.${op}: parameter '${s.name}' was disposed (was the model reloaded? make a new optimizer)`);
      let group = groups.get(s.param.device);
      if (!group) groups.set(s.param.device, group = { slots: [], grads: [] });
      group.slots.push(s);
      group.grads.push(g);
    }
    return groups;
  }

  /** The gradients the next step() uses, by device. */
  gradsByDevice(): Map<string, Tensor[]> {
    return new Map([...this.#groups('gradsByDevice')].map(([device, g]) => [device, g.grads]));
  }

  /**
   * One update of every parameter that has a gradient: fused, one kernel call
   * per device over all of its parameters; else one call per parameter.
   * Returns the names of the parameters updated (whose step counts grew).
   */
  step(options: StepOptions = {}): string[] {
    const foundInf = options.foundInf;
    if (foundInf !== undefined && !(foundInf instanceof Map)) throw new ArgumentError(`${this.kind}.step: foundInf must be a Map of device to flag tensor`);
    return noGrad(() => {
      const stepped: string[] = [];
      for (const [device, { slots, grads }] of this.#groups('step')) {
        const flag = foundInf?.get(device) ?? null;
        if (foundInf && !flag) throw new ArgumentError(`${this.kind}.step: no found-inf flag for the gradients on ${device} (were they unscaled?)`);
        // The checks run before any update: on an error, the counts of what was not updated go back.
        const count = (group: ParamSlot[], update: () => void) => {
          for (const s of group) s.step += 1;
          try {
            update();
          } catch (e) {
            for (const s of group) s.step -= 1;
            throw e;
          }
          stepped.push(...group.map((s) => s.name));
        };
        if (this.fused || flag) count(slots, () => this.updateGroup(slots, grads, flag));
        else slots.forEach((s, i) => count([s], () => this.update(s, grads[i])));
      }
      return stepped;
    });
  }

  /**
   * Takes back one count of each named parameter's step: a loss-scaled step
   * that the device skipped (its flag was set) did not update them, and the
   * bias corrections count updates.
   */
  uncountStep(names: readonly string[]): void {
    const byName = new Map(this.slots.map((s) => [s.name, s]));
    for (const n of names) {
      const s = byName.get(n);
      if (!s || s.step < 1) throw new ArgumentError(`${this.kind}.uncountStep: '${n}' has no step to take back`);
      s.step -= 1;
    }
  }

  /** One parameter's update (the unfused step). */
  protected abstract update(slot: ParamSlot, grad: Tensor): void;
  /** The update of several parameters of one device in one multi-tensor call; foundInf as in StepOptions. */
  protected abstract updateGroup(slots: ParamSlot[], grads: Tensor[], foundInf: Tensor | null): void;
  protected abstract hyper(): Record<string, unknown>;

  /** A zero state tensor shaped like the parameter, made once. */
  protected buffer(slot: ParamSlot, name: string): Tensor {
    let t = slot.state.get(name);
    if (!t) {
      t = keep(zeros([...slot.param.shape], { device: slot.param.device }));
      slot.state.set(name, t);
    }
    return t;
  }

  stateDict(): OptimizerState {
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    for (const s of this.slots) {
      steps[s.name] = s.step;
      for (const [k, t] of s.state) tensors.set(`${s.name}.${k}`, t);
    }
    return { meta: { kind: this.kind, lr: this.lr, ...this.hyper(), steps }, tensors };
  }

  /** Restores what stateDict() returned (tensors are copied into this optimizer's buffers). */
  loadStateDict(state: OptimizerState): void {
    const meta = state.meta;
    if (meta.kind !== this.kind) throw new StateDictError(`${this.kind}.loadStateDict: the state is of a ${String(meta.kind)} optimizer`, { missing: [], unexpected: [], mismatched: [] });
    const steps = (meta.steps ?? {}) as Record<string, number>;
    const known = new Set(this.slots.map((s) => s.name));
    const unexpected = Object.keys(steps).filter((n) => !known.has(n));
    const missing = this.slots.filter((s) => !(s.name in steps)).map((s) => s.name);
    if (unexpected.length || missing.length) {
      throw new StateDictError(`${this.kind}.loadStateDict: the parameters differ (missing: ${missing.slice(0, 10).join(', ') || 'none'}; unexpected: ${unexpected.slice(0, 10).join(', ') || 'none'})`,
        { missing, unexpected, mismatched: [] });
    }
    noGrad(() => {
      for (const s of this.slots) {
        s.step = steps[s.name];
        for (const t of s.state.values()) t.dispose();
        s.state.clear();
      }
      for (const [key, t] of state.tensors) {
        const slot = this.slots.find((s) => key.startsWith(`${s.name}.`) && !key.slice(s.name.length + 1).includes('.'));
        if (!slot) throw new StateDictError(`${this.kind}.loadStateDict: state tensor '${key}' names no parameter`, { missing: [], unexpected: [key], mismatched: [] });
        if (t.shape.length !== slot.param.shape.length || t.shape.some((d, i) => d !== slot.param.shape[i])) {
          throw new StateDictError(`${this.kind}.loadStateDict: '${key}' is [${t.shape}] but the parameter is [${slot.param.shape}]`,
            { missing: [], unexpected: [], mismatched: [{ name: key, expected: [...slot.param.shape], got: [...t.shape] }] });
        }
        // A copy of its own: the state is updated in place, and the source may still be in use.
        const moved = t.to({ dtype: 'f32', device: slot.param.device });
        slot.state.set(key.slice(slot.name.length + 1), keep(moved.clone()));
        moved.dispose();
      }
    });
    if (typeof meta.lr === 'number') this.lr = meta.lr;
  }

  /** Releases the state tensors. */
  dispose(): void {
    for (const s of this.slots) {
      for (const t of s.state.values()) t.dispose();
      s.state.clear();
    }
  }
  [Symbol.dispose](): void { this.dispose(); }
}
