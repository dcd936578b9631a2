/**
 * Dynamic loss scaling for f16 arithmetic, whose gradients overflow: the
 * loss is multiplied by a scale before backward, the gradients divided by it
 * before the optimizer step, and a step whose gradients hold inf or NaN is
 * skipped; the scale backs off after such a step and grows after
 * `growthInterval` good ones in a row.
 *
 * Nothing here makes the host wait for the device:
 * - the unscale pass sets a found-inf flag in device memory and the fused
 *   optimizer kernels read it there, so a bad step is skipped on the device;
 * - the host learns the flag the way the trainer learns losses: update()
 *   starts an asynchronous read, and its outcome (backoff or growth, and
 *   taking back the optimizer step counts of a skipped step) is applied
 *   between steps, at the first update() or next step's first scale() after
 *   it arrived (never inside a step, whose unscale must divide by the scale
 *   its loss was multiplied by). In the trainer that is two steps later, so
 *   the step right after an overflow still runs with the old scale (usually
 *   overflowing too, and skipped as well) and, when it is not skipped, with
 *   bias corrections one count ahead; the counts are exact again from the
 *   step after. A loop that never awaits still gets every outcome: update()
 *   reads a flag synchronously once it is two steps old (its step is done or
 *   next in line on the device, so the read costs no idle device time).
 * Keeping the scale on the host (rather than in a device tensor, as PyTorch
 * does) is what lets the step counts, which live on the host, follow the
 * flag without a per-step wait; the price is the lag above, which matters
 * only around the rare overflow.
 */
import { zeros } from '../creation';
import { ArgumentError, StateDictError } from '../errors';
import { noGrad } from '../autograd/grad-mode';
import { unscaleGrads } from '../ops/optim';
import { keep } from '../scope';
import { Tensor } from '../tensor';
import { Optimizer } from './optimizer';

export interface GradScalerOptions {
  /** The first scale (default 2^16). */
  initScale?: number;
  /** The scale's factor after growthInterval good steps in a row (default 2; > 1). */
  growthFactor?: number;
  /** The scale's factor after a step with inf or NaN gradients (default 0.5; in (0, 1)). */
  backoffFactor?: number;
  /** Good steps in a row before the scale grows (default 2000). */
  growthInterval?: number;
  /** false: scale() returns the loss as it is and step() is the optimizer's plain step. */
  enabled?: boolean;
}

export interface GradScalerState {
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  /** Good steps in a row since the scale last changed. */
  growthTracker: number;
}

/** A step whose flags are on their way to the host. */
interface PendingStep {
  optimizer: Optimizer;
  flags: Tensor[];
  /** The parameters the step counted (taken back when it was skipped). */
  stepped: string[];
  /** Set when the read arrives. */
  found?: boolean;
}

/** An optimizer's progress through the current step. */
interface StepState {
  flags: Map<string, Tensor> | null;
  stepped: string[] | null;
}

/** How many steps a flag may be behind before update() reads it synchronously. */
const MAX_LAG = 2;
const F32_MAX = 3.4028234663852886e38;

function positive(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !(v > 0) || v > F32_MAX) {
    throw new ArgumentError(`GradScaler: ${what} must be a positive finite number (as an f32), got ${String(v)}`);
  }
  return v;
}

function checkState(o: Record<string, unknown>, what: string): GradScalerState {
  const growthFactor = positive(o.growthFactor, 'growthFactor');
  if (!(growthFactor > 1)) throw new ArgumentError(`GradScaler: growthFactor must be > 1, got ${growthFactor}`);
  const backoffFactor = positive(o.backoffFactor, 'backoffFactor');
  if (!(backoffFactor < 1)) throw new ArgumentError(`GradScaler: backoffFactor must be in (0, 1), got ${backoffFactor}`);
  const growthInterval = o.growthInterval;
  if (!Number.isSafeInteger(growthInterval) || (growthInterval as number) < 1) {
    throw new ArgumentError(`GradScaler: growthInterval must be a positive integer, got ${String(growthInterval)}`);
  }
  const growthTracker = o.growthTracker;
  if (!Number.isSafeInteger(growthTracker) || (growthTracker as number) < 0) {
    throw new ArgumentError(`GradScaler: growthTracker must be a non-negative integer, got ${String(growthTracker)}`);
  }
  return { scale: positive(o.scale, what), growthFactor, backoffFactor, growthInterval: growthInterval as number, growthTracker: growthTracker as number };
}

export class GradScaler {
  readonly enabled: boolean;
  #state: GradScalerState;
  #steps = new Map<Optimizer, StepState>();
  #pending: PendingStep[] = [];
  /** From the step's first scale(), unscale() or step() to update(): the scale stays as it is. */
  #inStep = false;

  constructor(options: GradScalerOptions = {}) {
    if (options === null || typeof options !== 'object') throw new ArgumentError('GradScaler: options must be an object');
    const known = ['initScale', 'growthFactor', 'backoffFactor', 'growthInterval', 'enabled'];
    const unknown = Object.keys(options).filter((k) => !known.includes(k));
    if (unknown.length) throw new ArgumentError(`GradScaler: unknown option ${unknown.join(', ')} (expected ${known.join(', ')})`);
    const enabled = options.enabled ?? true;
    if (typeof enabled !== 'boolean') throw new ArgumentError(`GradScaler: enabled must be a boolean, got ${String(enabled)}`);
    this.enabled = enabled;
    this.#state = checkState({
      scale: options.initScale ?? 2 ** 16, growthFactor: options.growthFactor ?? 2, backoffFactor: options.backoffFactor ?? 0.5,
      growthInterval: options.growthInterval ?? 2000, growthTracker: 0,
    }, 'initScale');
  }

  /** The scale of the current step, or between steps of the next one (outcomes that arrived are applied first). */
  get scaleValue(): number {
    this.#applyArrived();
    return this.#state.scale;
  }

  /** loss × scale, for backward (the loss itself when disabled). */
  scale(loss: Tensor): Tensor {
    if (!(loss instanceof Tensor)) throw new ArgumentError('GradScaler.scale: expected the loss tensor');
    if (!this.enabled) return loss;
    this.#applyArrived();
    this.#inStep = true;
    return loss.mul(this.#state.scale);
  }

  /**
   * Divides the optimizer's gradients by the scale in place (one kernel call
   * per device) and records on the device whether any held inf or NaN. Once
   * per step: a second call before update() does nothing, so gradient
   * clipping can run on unscaled gradients before step().
   */
  unscale(optimizer: Optimizer): void {
    if (!(optimizer instanceof Optimizer)) throw new ArgumentError('GradScaler.unscale: expected an Optimizer');
    if (!this.enabled) return;
    const st = this.#stepState(optimizer);
    if (st.stepped) throw new ArgumentError('GradScaler.unscale: step() already ran for this optimizer since the last update()');
    if (st.flags) return;
    this.#inStep = true;
    const inv = 1 / this.#state.scale;
    st.flags = noGrad(() => {
      const flags = new Map<string, Tensor>();
      for (const [device, grads] of optimizer.gradsByDevice()) {
        const flag = keep(zeros([], { device }));
        flags.set(device, flag);
        unscaleGrads(grads, flag, inv);
      }
      return flags;
    });
  }

  /**
   * The optimizer's step, after unscale() if it has not run: the device
   * skips it when a gradient held inf or NaN. No host wait.
   */
  step(optimizer: Optimizer): void {
    if (!(optimizer instanceof Optimizer)) throw new ArgumentError('GradScaler.step: expected an Optimizer');
    if (!this.enabled) {
      optimizer.step();
      return;
    }
    this.unscale(optimizer);
    const st = this.#stepState(optimizer);
    if (st.stepped) throw new ArgumentError('GradScaler.step: step() already ran for this optimizer since the last update()');
    st.stepped = optimizer.step({ foundInf: st.flags! });
  }

  /**
   * Ends the step: starts reading this step's flags (their outcome adjusts
   * the scale when it arrives, see the module comment) and applies what
   * arrived. Reads flags more than MAX_LAG steps old synchronously.
   */
  update(): void {
    if (!this.enabled) return;
    for (const [optimizer, st] of this.#steps) {
      const flags = [...(st.flags?.values() ?? [])];
      if (!flags.length) continue;
      if (!st.stepped) {
        // Unscaled but not stepped: nothing to skip or count, so the flags are dropped.
        for (const f of flags) f.dispose();
        continue;
      }
      const p: PendingStep = { optimizer, flags, stepped: st.stepped };
      // A failed read leaves the outcome open: the synchronous read below then gets it, or reports the error.
      void Promise.all(flags.map((f) => f.data())).then((vs) => { p.found ??= vs.some((v) => v[0] !== 0); }, () => undefined);
      this.#pending.push(p);
    }
    this.#steps.clear();
    this.#inStep = false;
    const lagging = this.#pending.length - MAX_LAG;
    for (let i = 0; i < lagging; ++i) {
      const p = this.#pending[i];
      if (p.found === undefined) p.found = p.flags.some((f) => f.dataSync()[0] !== 0);
    }
    this.#applyArrived();
  }

  /** Waits for every flag read and, between steps, applies the outcomes (e.g. before a checkpoint). */
  async settle(): Promise<void> {
    for (const p of this.#pending) {
      if (p.found === undefined) {
        const vs = await Promise.all(p.flags.map((f) => f.data()));
        p.found = vs.some((v) => v[0] !== 0);
      }
    }
    this.#applyArrived();
  }

  /** The state to checkpoint; every outcome must have arrived (await settle() first). */
  stateDict(): GradScalerState {
    this.#applyArrived();
    if (this.#pending.length) throw new ArgumentError('GradScaler.stateDict: flag reads are still on their way; await scaler.settle() first');
    return { ...this.#state };
  }

  loadStateDict(state: GradScalerState): void {
    if (state === null || typeof state !== 'object') {
      throw new StateDictError('GradScaler.loadStateDict: expected the object of stateDict()', { missing: [], unexpected: [], mismatched: [] });
    }
    this.#state = checkState(state as unknown as Record<string, unknown>, 'scale');
  }

  /** Between steps: applies the outcomes that arrived, oldest first, up to the first still on its way. */
  #applyArrived(): void {
    if (this.#inStep) return;
    const s = this.#state;
    while (this.#pending.length && this.#pending[0].found !== undefined) {
      const p = this.#pending.shift()!;
      for (const f of p.flags) f.dispose();
      if (p.found) {
        p.optimizer.uncountStep(p.stepped);
        s.scale *= s.backoffFactor;
        s.growthTracker = 0;
      } else if (++s.growthTracker >= s.growthInterval) {
        if (s.scale * s.growthFactor <= F32_MAX) s.scale *= s.growthFactor;  // the scale stays a finite f32
        s.growthTracker = 0;
      }
    }
  }

  #stepState(optimizer: Optimizer): StepState {
    let st = this.#steps.get(optimizer);
    if (!st) this.#steps.set(optimizer, st = { flags: null, stepped: null });
    return st;
  }

  /** Releases the flags still held. */
  dispose(): void {
    for (const st of this.#steps.values()) for (const f of st.flags?.values() ?? []) f.dispose();
    for (const p of this.#pending) for (const f of p.flags) f.dispose();
    this.#steps.clear();
    this.#pending = [];
    this.#inStep = false;
  }
}
