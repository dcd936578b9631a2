/**
 * Reverse-mode backward over the recorded graph: nodes run in dependency
 * order, gradients arriving at a node from several consumers are summed
 * first, every intermediate gradient is disposed as soon as it is consumed,
 * and each node's saved tensors are released right after its backward ran.
 */
import { ones } from '../creation';
import { ArgumentError, ShapeError } from '../errors';
import { keep } from '../scope';
import { BackwardOptions, Tensor } from '../tensor';
import { noGrad } from './grad-mode';
import { AccumulateGrad, GradNode, edgeOf } from './node';

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Adds `g` into a leaf's `.grad` (gradients accumulate across backward passes until zeroGrad). */
function accumulate(leaf: Tensor, g: Tensor): void {
  if (!sameShape(leaf.shape, g.shape)) {
    g.dispose();
    throw new ShapeError(`backward: the gradient for ${leaf.describe()} came out as [${g.shape}]`);
  }
  if (leaf.isDisposed) { g.dispose(); return; }
  if (leaf.grad === null || leaf.grad.isDisposed) {
    const c = g.isContiguous ? g : g.contiguous();
    if (c !== g) g.dispose();
    leaf.grad = keep(c);
    return;
  }
  const sum = leaf.grad.add(g);
  leaf.grad.dispose();
  g.dispose();
  leaf.grad = keep(sum);
}

/** The nodes reachable from the roots, with how many edges among them lead into each. */
function dependencies(roots: readonly GradNode[]): Map<GradNode, number> {
  const deps = new Map<GradNode, number>(roots.map((r) => [r, 0]));
  const stack = [...deps.keys()];
  while (stack.length) {
    const n = stack.pop()!;
    for (const e of n.next) {
      if (!e) continue;
      const seen = deps.has(e.node);
      deps.set(e.node, (deps.get(e.node) ?? 0) + 1);
      if (!seen) stack.push(e.node);
    }
  }
  return deps;
}

export function backward(root: Tensor, grad: Tensor | undefined, options: BackwardOptions = {}): void {
  backwardMany([root], [grad], options);
}

/**
 * Backward from several outputs at once, each with its gradient (a scalar
 * root may leave it undefined: ones).
 */
export function backwardMany(roots: readonly Tensor[], grads: readonly (Tensor | undefined)[], options: BackwardOptions = {}): void {
  const edges = roots.map((root, i) => {
    const edge = edgeOf(root);
    if (!edge) throw new ArgumentError(`backward: ${root.describe()} does not require grad (no input of the ops that made it requires grad)`);
    const g = grads[i];
    if (g === undefined && root.size !== 1) {
      throw new ShapeError(`backward: ${root.describe()} is not a scalar; pass its gradient: backward(grad)`);
    }
    if (g !== undefined) {
      if (!(g instanceof Tensor)) throw new ArgumentError('backward: grad must be a Tensor');
      if (!sameShape(g.shape, root.shape)) throw new ShapeError(`backward: grad ${g.describe()} must have the shape of ${root.describe()}`);
    }
    return edge;
  });
  const retain = options.retainGraph ?? false;
  noGrad(() => {
    const deps = dependencies(edges.map((e) => e.node));
    const buffers = new Map<GradNode, (Tensor | null)[]>();
    const put = (node: GradNode, index: number, g: Tensor) => {
      let slots = buffers.get(node);
      if (!slots) buffers.set(node, (slots = new Array<Tensor | null>(node.outputs).fill(null)));
      const prev = slots[index];
      if (prev === null) { slots[index] = g; return; }
      slots[index] = prev.add(g);
      prev.dispose();
      g.dispose();
    };
    edges.forEach((edge, i) => {
      const g = grads[i];
      put(edge.node, edge.index, g ? g.alias() : ones(roots[i].shape, { dtype: roots[i].dtype, device: roots[i].device }));
    });
    const ready: GradNode[] = [...new Set(edges.map((e) => e.node))].filter((n) => deps.get(n) === 0);
    try {
      while (ready.length) {
        const node = ready.pop()!;
        const grads = buffers.get(node) ?? new Array<Tensor | null>(node.outputs).fill(null);
        buffers.delete(node);
        if (node instanceof AccumulateGrad) {
          if (grads[0]) accumulate(node.leaf, grads[0]);
          continue;
        }
        const live = grads.some((g) => g !== null);
        let inputs: (Tensor | null)[] = [];
        try {
          inputs = live ? node.apply(grads) : [];
        } finally {
          if (!retain) node.release();
        }
        // Route each input gradient; one tensor sent to two inputs gets a second handle.
        const routed = new Set<Tensor>();
        node.next.forEach((e, i) => {
          const g = inputs[i] ?? null;
          if (e && g) put(e.node, e.index, routed.has(g) ? g.alias() : g);
          if (e && g) routed.add(g);
        });
        for (const g of [...grads, ...inputs]) if (g && !routed.has(g)) g.dispose();
        for (const e of node.next) {
          if (!e) continue;
          const left = deps.get(e.node)! - 1;
          deps.set(e.node, left);
          if (left === 0) ready.push(e.node);
        }
      }
    } finally {
      for (const slots of buffers.values()) for (const g of slots) g?.dispose();
    }
  });
}
