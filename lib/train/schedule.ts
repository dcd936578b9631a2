/**
 * Per-step learning-rate schedules. Each is a plain object whose JSON form is
 * enough to rebuild it (scheduleFromJSON), so a checkpoint can record the
 * schedule next to the step it stopped at.
 *
 * Steps count from 0 (the first optimizer step); fractional steps are allowed.
 */
import { ArgumentError } from '../errors';

export interface WarmupCosineOptions {
  baseLr: number;
  warmupSteps: number;
  totalSteps: number;
  minLr?: number;
  warmupStartLr?: number;
}

export interface StepDecayOptions {
  baseLr: number;
  stepSize: number;
  gamma: number;
  warmupSteps?: number;
}

export type ScheduleJSON =
  | ({ kind: 'warmup-cosine' } & Required<WarmupCosineOptions>)
  | ({ kind: 'step-decay' } & Required<StepDecayOptions>)
  | { kind: 'constant'; lr: number };

export interface LrSchedule {
  readonly kind: ScheduleJSON['kind'];
  /** The learning rate for the optimizer step `step` (0-based). */
  lrAt(step: number): number;
  /** Everything scheduleFromJSON needs; JSON.stringify(schedule) uses it. */
  toJSON(): ScheduleJSON;
}

function positive(fn: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ArgumentError(`${fn}: ${name} must be a finite number > 0, got ${String(v)}`);
  return v;
}

function nonNegative(fn: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ArgumentError(`${fn}: ${name} must be a finite number >= 0, got ${String(v)}`);
  return v;
}

function count(fn: string, name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new ArgumentError(`${fn}: ${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

function checkStep(kind: string, step: number): void {
  if (typeof step !== 'number' || !Number.isFinite(step) || step < 0) throw new ArgumentError(`${kind}.lrAt: step must be a finite number >= 0, got ${String(step)}`);
}

/** Linear warm-up from warmupStartLr (step 0) to baseLr (step warmupSteps), then cosine down to minLr at totalSteps, minLr after. */
export function warmupCosine(options: WarmupCosineOptions): LrSchedule {
  const fn = 'warmupCosine';
  if (options === null || typeof options !== 'object') throw new ArgumentError(`${fn}: expected an options object { baseLr, warmupSteps, totalSteps, minLr?, warmupStartLr? }`);
  const baseLr = positive(fn, 'baseLr', options.baseLr);
  const warmupSteps = count(fn, 'warmupSteps', options.warmupSteps, 0);
  const totalSteps = count(fn, 'totalSteps', options.totalSteps, warmupSteps + 1);
  const minLr = nonNegative(fn, 'minLr', options.minLr ?? 0);
  const warmupStartLr = nonNegative(fn, 'warmupStartLr', options.warmupStartLr ?? 0);
  if (minLr > baseLr) throw new ArgumentError(`${fn}: minLr (${minLr}) must not exceed baseLr (${baseLr})`);
  if (warmupStartLr > baseLr) throw new ArgumentError(`${fn}: warmupStartLr (${warmupStartLr}) must not exceed baseLr (${baseLr})`);
  const json = { kind: 'warmup-cosine' as const, baseLr, warmupSteps, totalSteps, minLr, warmupStartLr };
  return {
    kind: json.kind,
    lrAt(step: number): number {
      checkStep(fn, step);
      if (step < warmupSteps) return warmupStartLr + (baseLr - warmupStartLr) * (step / warmupSteps);
      if (step >= totalSteps) return minLr;
      const progress = (step - warmupSteps) / (totalSteps - warmupSteps);
      return minLr + (baseLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
    },
    toJSON: () => ({ ...json }),
  };
}

/**
 * Optional linear warm-up from 0 to baseLr over warmupSteps, then baseLr
 * multiplied by gamma every stepSize steps (counted from the end of warm-up).
 */
export function stepDecay(options: StepDecayOptions): LrSchedule {
  const fn = 'stepDecay';
  if (options === null || typeof options !== 'object') throw new ArgumentError(`${fn}: expected an options object { baseLr, stepSize, gamma, warmupSteps? }`);
  const baseLr = positive(fn, 'baseLr', options.baseLr);
  const stepSize = count(fn, 'stepSize', options.stepSize, 1);
  const gamma = positive(fn, 'gamma', options.gamma);
  if (gamma > 1) throw new ArgumentError(`${fn}: gamma must be in (0, 1], got ${gamma}`);
  const warmupSteps = count(fn, 'warmupSteps', options.warmupSteps ?? 0, 0);
  const json = { kind: 'step-decay' as const, baseLr, stepSize, gamma, warmupSteps };
  return {
    kind: json.kind,
    lrAt(step: number): number {
      checkStep(fn, step);
      if (step < warmupSteps) return baseLr * (step / warmupSteps);
      return baseLr * gamma ** Math.floor((step - warmupSteps) / stepSize);
    },
    toJSON: () => ({ ...json }),
  };
}

export function constant(lr: number): LrSchedule {
  const value = positive('constant', 'lr', lr);
  return {
    kind: 'constant',
    lrAt(step: number): number {
      checkStep('constant', step);
      return value;
    },
    toJSON: () => ({ kind: 'constant', lr: value }),
  };
}

/** Rebuilds a schedule from its toJSON() form (validated as the constructors do). */
export function scheduleFromJSON(json: unknown): LrSchedule {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ArgumentError(`scheduleFromJSON: expected an object with a kind, got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`);
  }
  const j = json as Record<string, unknown>;
  switch (j.kind) {
    case 'warmup-cosine':
      return warmupCosine(j as unknown as WarmupCosineOptions);
    case 'step-decay':
      return stepDecay(j as unknown as StepDecayOptions);
    case 'constant':
      return constant(j.lr as number);
    default:
      throw new ArgumentError(`scheduleFromJSON: unknown schedule kind '${String(j.kind)}'; expected warmup-cosine, step-decay or constant`);
  }
}
