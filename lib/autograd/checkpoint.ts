/**
 * Activation checkpointing: the forward of a segment runs without recording
 * and keeps only the segment's inputs; backward runs the segment again with
 * recording and backpropagates through that recomputation. Memory for the
 * segment's activations is traded for one more forward pass. Parameters used
 * inside the segment get their gradients directly. The segment must compute
 * the same thing twice (stochastic-depth masks are drawn before, not inside),
 * so the recomputation runs in the autocast precision of the forward.
 */
import { autocast, mathPrecision } from '../autocast';
import { tidy } from '../scope';
import { Tensor } from '../tensor';
import { backwardMany } from './engine';
import { enableGrad } from './grad-mode';
import { recordOp, recording } from './node';

export function checkpoint(fn: (...inputs: Tensor[]) => Tensor[], inputs: Tensor[]): Tensor[] {
  if (!recording(inputs)) return fn(...inputs);
  const needs = inputs.map((t) => t.requiresGrad);
  const precision = mathPrecision();
  return recordOp('checkpoint', inputs, () => ({
    outputs: fn(...inputs),
    save: inputs,
    backward: (grads, saved) => autocast(precision, () => enableGrad(() => tidy(() => {
      const leaves = saved.map((t, i) => {
        const leaf = t.detach();
        if (needs[i]) leaf.requiresGrad = true;
        return leaf;
      });
      const outs = fn(...leaves);
      const roots: Tensor[] = [], rootGrads: Tensor[] = [];
      outs.forEach((o, i) => {
        const g = grads[i];
        if (g && o.requiresGrad) { roots.push(o); rootGrads.push(g); }
      });
      if (roots.length) backwardMany(roots, rootGrads);
      return leaves.map((leaf) => {
        const g = leaf.grad;
        leaf.grad = null;  // handed to the engine, not disposed with the leaf
        return g;
      });
    }))),
  }));
}
