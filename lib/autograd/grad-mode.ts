/** Grad mode: whether ops on tensors that require grad are recorded for backward. */
import { ArgumentError } from '../errors';

let enabled = true;

export function isGradEnabled(): boolean {
  return enabled;
}

function withMode<T>(on: boolean, fn: () => T, name: string): T {
  if (typeof fn !== 'function') throw new ArgumentError(`${name}: expected a function`);
  const before = enabled;
  enabled = on;
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new ArgumentError(`${name}: the function returned a Promise; grad mode cannot follow an await. Call ${name} around the synchronous part`);
    }
    return result;
  } finally {
    enabled = before;
  }
}

/** Runs `fn` without recording (inference, weight updates, metrics). Synchronous only. */
export function noGrad<T>(fn: () => T): T {
  return withMode(false, fn, 'noGrad');
}

/** Runs `fn` with recording on (inside a noGrad region). Synchronous only. */
export function enableGrad<T>(fn: () => T): T {
  return withMode(true, fn, 'enableGrad');
}
