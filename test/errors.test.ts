// Every bad input raises its typed error with a code and a message that says
// what was expected and what came.
import * as vl from '../lib';

function expectError(fn: () => unknown, cls: new (...a: never[]) => vl.VisionLlamaError, code: string, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(cls);
  expect(caught).toBeInstanceOf(vl.VisionLlamaError);
  expect((caught as vl.VisionLlamaError).code).toBe(code);
  expect((caught as Error).message).toMatch(message);
}

describe('typed errors', () => {
  test.each([
    ['wrong data length', () => vl.tensor(new Float32Array(5), [2, 3]), /shape \[2,3\] needs 6 elements but the data has 5/],
    ['negative dim', () => vl.zeros([2, -1]), /non-negative integers, got \[2,-1\]/],
    ['non-integer dim', () => vl.zeros([2, 1.5]), /must hold integers; element 1 is 1.5/],
    ['NaN dim', () => vl.ones([NaN]), /must hold integers/],
    ['too many dims', () => vl.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1]), /at most 8 dimensions/],
    ['ragged nested arrays', () => vl.tensor([[1, 2], [3]]), /ragged: expected 2 elements at data\[1\]/],
    ['reshape to another size', () => vl.arange(6).reshape(4), /shape \[4\] has 4 elements but the tensor has 6/],
    ['two -1 in reshape', () => vl.arange(6).reshape(-1, -1), /only one dimension can be -1/],
    ['bad permutation', () => vl.arange(6).reshape(2, 3).permute(0, 0), /is not a permutation of 0..1/],
    ['incompatible broadcast', () => vl.zeros([2, 3]).add(vl.zeros([4])), /cannot be broadcast together \(dimension 1: 3 vs 4\)/],
    ['view of a strided tensor', () => vl.zeros([2, 3]).transpose().view(6), /call contiguous\(\) first/],
    ['sum over a missing dim', () => vl.zeros([2, 3]).sum(2), /dimension 2 is out of range for f32\[2,3\]/],
  ])('ShapeError: %s', (_name, fn, message) => expectError(fn, vl.ShapeError, 'VL_SHAPE', message));

  test.each([
    ['unknown dtype', () => vl.zeros([2], { dtype: 'f64' as vl.DType }), /unknown dtype "f64": expected one of f32, bf16, f16, i32, i64, u8/],
    ['unknown dtype in to()', () => vl.zeros([2]).to('float64' as vl.DType), /'float64' is neither a dtype/],
    ['float data for an int tensor', () => vl.tensor(new Float32Array([1]), [1], { dtype: 'i32' }), /Float32Array cannot make a i32 tensor/],
    ['fractional number for i32', () => vl.tensor([1, 2.5], [2], { dtype: 'i32' }), /value 2.5 at index 1 is not a i32 integer/],
    ['out-of-range number for u8', () => vl.tensor([256], [1], { dtype: 'u8' }), /value 256 at index 0 is not a u8 integer/],
    ['bigint beyond i64', () => vl.tensor([2n ** 63n], [1], { dtype: 'i64' }), /is not an i64 integer/],
    ['Uint16Array without a 16-bit float dtype', () => vl.tensor(new Uint16Array(2)), /raw bf16\/f16 bits/],
    ['mixed dtypes in an op', () => vl.zeros([2]).add(vl.zeros([2], { dtype: 'bf16' })), /dtypes differ \(f32\[2\] on cpu and bf16\[2\] on cpu\)/],
    ['random ints', () => vl.randn([2], { dtype: 'i32' }), /expected a float dtype/],
    ['fractional fill of an int tensor', () => vl.full([2], 0.5, { dtype: 'i32' }), /value 0.5 is not an integer/],
  ])('DTypeError: %s', (_name, fn, message) => expectError(fn, vl.DTypeError, 'VL_DTYPE', message));

  test.each([
    ['unknown device', () => vl.zeros([2], { device: 'tpu' }), /unknown device 'tpu': expected 'cpu', 'cuda' or 'cuda:N'/],
    ['missing CPU device index', () => vl.zeros([2], { device: 'cpu:3' }), /device cpu:3 does not exist/],
  ])('DeviceError: %s', (_name, fn, message) => expectError(fn, vl.DeviceError, 'VL_DEVICE', message));

  test('use after dispose: every method, sync and async', async () => {
    const a = vl.ones([2]);
    const b = vl.ones([2]);
    a.dispose();
    expectError(() => a.add(b), vl.DisposedError, 'VL_DISPOSED', /add: f32\[2\] on cpu was disposed/);
    expectError(() => b.add(a), vl.DisposedError, 'VL_DISPOSED', /was disposed/);
    expectError(() => a.reshape(2), vl.DisposedError, 'VL_DISPOSED', /reshape/);
    expectError(() => a.dataSync(), vl.DisposedError, 'VL_DISPOSED', /dataSync/);
    await expect(a.data()).rejects.toBeInstanceOf(vl.DisposedError);
    b.dispose();
  });

  test('ArgumentError: bad seeds, steps, thread counts', () => {
    expectError(() => vl.randn([2], { seed: -1 }), vl.ArgumentError, 'VL_ARGUMENT', /seed must be a non-negative safe integer/);
    expectError(() => vl.arange(0, 5, 0), vl.ArgumentError, 'VL_ARGUMENT', /step must not be 0/);
    expectError(() => vl.setNumThreads(0), vl.ArgumentError, 'VL_ARGUMENT', /positive integer/);
    expectError(() => vl.tensor('abc' as unknown as number[]), vl.ArgumentError, 'VL_ARGUMENT', /typed array or an array/);
  });

  test('a failing kernel poisons its outputs: the error surfaces when data is read', async () => {
    using a = vl.tensor([1, 2], [2], { dtype: 'i32' });
    using zero = vl.zeros([2], { dtype: 'i32' });
    using q = a.div(zero);
    using r = q.add(1); // queued after the failure; passes the error on
    await expect(r.data()).rejects.toThrow(/integer division by zero/);
    await expect(r.data()).rejects.toBeInstanceOf(vl.ExecutionError);
    // The stream keeps working for unrelated tensors; the one overflowing integer division wraps.
    using min = vl.tensor([-(2n ** 63n), 7n], [2], { dtype: 'i64' });
    using wrapped = min.div(vl.tensor([-1n, -1n], [2], { dtype: 'i64' }));
    expect(Array.from(await wrapped.data<'i64'>())).toEqual([-(2n ** 63n), -7n]);
    using ok = a.add(a);
    expect(Array.from(await ok.data())).toEqual([2, 4]);
  });
});
