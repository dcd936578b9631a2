/**
 * The recorded graph: each op that ran on tensors requiring grad leaves a
 * GradNode holding what its backward needs (saved tensors as aliases that no
 * tidy() scope owns, released as soon as backward has used them) and edges
 * to the nodes of its inputs. Leaves accumulate into `.grad`.
 */
import { ArgumentError } from '../errors';
import { Tensor } from '../tensor';
import { isGradEnabled, noGrad } from './grad-mode';

export interface GradEdge {
  node: GradNode;
  /** Which output of `node` this is. */
  index: number;
}

/**
 * Computes the gradients of the inputs (null where an input needs none or
 * the gradient is zero) from those of the outputs (null where unused).
 * Tensors it returns are owned by the engine; it may return an incoming
 * gradient itself.
 */
export type BackwardFn = (grads: (Tensor | null)[], saved: Tensor[]) => (Tensor | null)[];

export class GradNode {
  /** One per input; null for inputs that do not require grad. */
  readonly next: (GradEdge | null)[];
  #saved: Tensor[];
  #fn: BackwardFn | null;

  constructor(readonly name: string, readonly outputs: number, next: (GradEdge | null)[], saved: Tensor[], fn: BackwardFn | null) {
    this.next = next;
    this.#saved = saved;
    this.#fn = fn;
  }

  #releasedOnce = false;

  apply(grads: (Tensor | null)[]): (Tensor | null)[] {
    if (this.#releasedOnce) {
      throw new ArgumentError(`backward: the graph through '${this.name}' was already used and freed; pass { retainGraph: true } to the first backward() to run it twice`);
    }
    return this.#fn ? this.#fn(grads, this.#saved) : grads;
  }

  /** Drops the saved tensors and the backward closure (which may reference the forward's inputs). */
  release(): void {
    for (const t of this.#saved) t.dispose();
    this.#saved = [];
    this.#fn = null;
    this.#releasedOnce = true;
  }
}

/** The node that adds incoming gradients into a leaf's `.grad`. */
export class AccumulateGrad extends GradNode {
  constructor(readonly leaf: Tensor) {
    super('AccumulateGrad', 1, [], [], null);
  }
}

const accumulators = new WeakMap<Tensor, AccumulateGrad>();

/** The edge that gradients for `t` flow into, or null when `t` needs none. */
export function edgeOf(t: Tensor): GradEdge | null {
  if (t.gradEdge) return t.gradEdge;
  if (!t.requiresGrad) return null;
  let acc = accumulators.get(t);
  if (!acc) {
    acc = new AccumulateGrad(t);
    accumulators.set(t, acc);
  }
  return { node: acc, index: 0 };
}

/** Whether an op on these inputs is to be recorded. */
export function recording(inputs: readonly (Tensor | null | undefined | number)[]): boolean {
  if (!isGradEnabled()) return false;
  return inputs.some((t) => t instanceof Tensor && t.requiresGrad);
}

/**
 * Runs an op's forward with recording off, then (when an input requires
 * grad) records one node for its outputs. `forward` returns the outputs, the
 * tensors backward needs (saved as aliases), and the backward function.
 */
export function recordOp<O extends Tensor[]>(
  name: string,
  inputs: readonly (Tensor | null | undefined)[],
  forward: () => { outputs: O; save?: Tensor[]; backward: BackwardFn },
): O {
  const record = recording(inputs);
  const { outputs, save = [], backward } = noGrad(forward);
  if (!record) return outputs;
  const next = inputs.map((t) => (t instanceof Tensor ? edgeOf(t) : null));
  const node = new GradNode(name, outputs.length, next, save.map((t) => t.alias()), backward);
  outputs.forEach((t, index) => { t.gradEdge = { node, index }; });
  return outputs;
}
