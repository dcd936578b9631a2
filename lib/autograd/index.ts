/** Reverse-mode autograd: grad mode, the recorded graph and backward. */
import { setGradHooks } from '../tensor';
import { backward } from './engine';
import { isGradEnabled } from './grad-mode';
import * as ops from './tensor-ops';

setGradHooks({
  enabled: isGradEnabled,
  binary: ops.binary,
  sum: ops.sum,
  reshape: ops.reshape,
  permute: ops.permute,
  narrow: ops.narrow,
  expand: ops.expand,
  contiguous: ops.contiguous,
  concat: ops.concatOp,
  backward,
});

export { noGrad, enableGrad, isGradEnabled } from './grad-mode';
export { recordOp } from './node';
export { checkpoint } from './checkpoint';
export { backwardMany } from './engine';
export type { BackwardFn, GradEdge } from './node';
