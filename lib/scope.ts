/**
 * Deterministic release of native memory: tidy() scopes, keep(), and the
 * bookkeeping that Tensor uses to register itself with the open scope.
 */
import { ArgumentError } from './errors';

/** Anything that owns native memory and can release it now. */
export interface Disposable {
  dispose(): void;
}

/**
 * Objects that own tensors (packed weights, ...) list them under this key,
 * so tidy() keeps those tensors when it returns the owner.
 */
export const ownedTensors: unique symbol = Symbol('visionllama.ownedTensors');

const scopes: Set<Disposable>[] = [];
const kept = new WeakSet<Disposable>();

/** Called by every new tensor: the innermost tidy() scope owns it. */
export function track(t: Disposable): void {
  const top = scopes[scopes.length - 1];
  if (top && !kept.has(t)) top.add(t);
}

/** Excludes `t` from disposal by the enclosing tidy() scopes. */
export function keep<T extends Disposable>(t: T): T {
  kept.add(t);
  for (const s of scopes) s.delete(t);
  const owner = (t as { [ownedTensors]?: () => unknown[] })[ownedTensors];
  if (typeof owner === 'function') for (const v of owner.call(t)) keep(v as Disposable);
  return t;
}

function collect(value: unknown, out: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 8) return;
  if (out.has(value)) return;
  out.add(value);
  const owner = (value as { [ownedTensors]?: () => unknown[] })[ownedTensors];
  if (typeof owner === 'function') for (const v of owner.call(value)) collect(v, out, depth + 1);
  else if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, depth + 1);
}

/**
 * Runs `fn` and disposes every tensor it created, except those it returns
 * (directly, inside arrays, Maps and plain objects, or owned by a returned
 * packed weight) and those passed to
 * keep(). Returned tensors move to the enclosing scope. `fn` must be
 * synchronous: a scope cannot follow an await.
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new ArgumentError('tidy: expected a function');
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw err;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new ArgumentError('tidy: the function returned a Promise; tidy() scopes are synchronous. ' +
      'Use `using` declarations or dispose() in async code');
  }
  const returned = new Set<unknown>();
  collect(result, returned);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}
