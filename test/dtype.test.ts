// Round trips for every dtype and the rounding rules of bf16/f16 conversions,
// checked against an independent reference: nearest representable value by
// exact search, ties to the even bit pattern.
import * as vl from '../lib';

const f32 = (x: number) => Math.fround(x);

function bitsToF32(bits: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, bits >>> 0, true);
  return dv.getFloat32(0, true);
}

/** Decodes binary16 from its definition. */
function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}
const bf16Value = (h: number) => bitsToF32(h << 16);

/** Round-to-nearest-even by search over the sorted non-negative finite values of a format. */
function makeRounder(maxFinite: number, value: (h: number) => number, overflowAt: number) {
  const table = Float64Array.from({ length: maxFinite + 1 }, (_, h) => value(h));
  return (x: number): number => {
    if (Number.isNaN(x)) return NaN;
    const a = Math.abs(x);
    const sign = x < 0 || Object.is(x, -0) ? -1 : 1;
    if (a >= overflowAt) return sign * Infinity;
    let lo = 0, hi = maxFinite;
    while (lo < hi) { // largest index with table[idx] <= a
      const mid = (lo + hi + 1) >> 1;
      if (table[mid] <= a) lo = mid; else hi = mid - 1;
    }
    if (lo === maxFinite) return sign * table[lo];
    const below = table[lo], above = table[lo + 1];
    const pick = a - below < above - a ? lo : a - below > above - a ? lo + 1 : (lo % 2 === 0 ? lo : lo + 1);
    return sign * table[pick];
  };
}
const refF16 = makeRounder(0x7bff, f16Value, 65520);
const refBf16 = makeRounder(0x7f7f, bf16Value, (bf16Value(0x7f7f) + 2 ** 128) / 2);

function sameValue(a: number, b: number): boolean {
  return (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b);
}

function specials(): Float32Array {
  const v = [0, -0, 1, -1, 1.5, 65504, 65519.99, 65520, 65536, -65520, 6e-8, 5.96e-8, 2.98e-8, 2.9802322e-8, 1e-45,
    -1e-45, 6.1035156e-5, 3.4e38, 3.3895314e38, 3.3961776e38, 3.4028235e38, Infinity, -Infinity, NaN,
    1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051, 1e-40, -1e-39];
  return Float32Array.from(v);
}

function randomFloat32(n: number, seed: number): Float32Array {
  // Random bit patterns cover every exponent, subnormals, NaN payloads.
  const out = new Uint32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; ++i) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s;
  }
  return new Float32Array(out.buffer);
}

describe('dtype round trips', () => {
  test('f32 values come back bit-exact', async () => {
    const src = randomFloat32(5000, 1);
    using t = vl.tensor(src, [50, 100]);
    expect(t.dtype).toBe('f32');
    expect(Buffer.from((await t.data()).buffer).equals(Buffer.from(src.buffer))).toBe(true);
  });

  test('i32, i64 and u8 keep their values', async () => {
    const i32 = Int32Array.from([0, 1, -1, 2147483647, -2147483648, 12345]);
    using a = vl.tensor(i32, [2, 3]);
    expect(Array.from(await a.data())).toEqual(Array.from(i32));
    const i64 = BigInt64Array.from([0n, -1n, 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n]);
    using b = vl.tensor(i64);
    expect(b.dtype).toBe('i64');
    expect(Array.from(await b.data())).toEqual(Array.from(i64));
    using c = vl.tensor([[1n, 2n], [3n, -4n]], undefined, { dtype: 'i64' });
    expect(await c.array()).toEqual([[1n, 2n], [3n, -4n]]);
    const u8 = Uint8Array.from([0, 1, 127, 128, 255]);
    using d = vl.tensor(u8);
    expect(Array.from(await d.data())).toEqual(Array.from(u8));
    using e = vl.tensor([1, 2, 3], [3], { dtype: 'i32' });
    expect(Array.from(await e.data())).toEqual([1, 2, 3]);
  });

  test('bf16 and f16 keep every representable value (all 65536 bit patterns)', async () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    for (const [dtype, decode] of [['bf16', bf16Value], ['f16', f16Value]] as const) {
      using t = vl.tensor(bits, [65536], { dtype });
      const raw = new Uint16Array((await t.bytes()).buffer);
      expect(Buffer.from(raw.buffer).equals(Buffer.from(bits.buffer))).toBe(true);
      const values = await t.data();
      let bad = 0;
      for (let i = 0; i < 65536; ++i) if (!sameValue(values[i], decode(i))) ++bad;
      expect(bad).toBe(0);
      // Widening and narrowing again is the identity (NaNs stay NaN).
      using wide = t.to('f32');
      using back = wide.to(dtype);
      const again = await back.data();
      let changed = 0;
      for (let i = 0; i < 65536; ++i) if (!sameValue(again[i], values[i])) ++changed;
      expect(changed).toBe(0);
    }
  });

  test('every dtype converts to every other and back where exact', async () => {
    const values = [0, 1, 2, 3, 100, 127];
    for (const from of vl.DTYPES) {
      for (const to of vl.DTYPES) {
        using a = vl.tensor(values, [6], { dtype: from });
        using b = a.to(to);
        expect(b.dtype).toBe(to);
        using c = b.to(from);
        const got = Array.from(await c.data() as ArrayLike<number | bigint>, Number);
        expect(got).toEqual(values);
      }
    }
  });
});

describe('bf16/f16 rounding', () => {
  test.each([['bf16', refBf16], ['f16', refF16]] as const)('%s: round to nearest even, NaN/Inf kept, on specials and 200k random floats', async (dtype, ref) => {
    const src = new Float32Array([...specials(), ...randomFloat32(200000, 7)]);
    using t = vl.tensor(src, [src.length], { dtype });
    const got = await t.data();
    const bad: string[] = [];
    for (let i = 0; i < src.length && bad.length < 5; ++i) {
      const want = ref(src[i]);
      if (!sameValue(got[i], want)) bad.push(`${src[i]} -> ${got[i]} (want ${want})`);
    }
    expect(bad).toEqual([]);
  });

  test('ties go to even', async () => {
    using a = vl.tensor(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8]), [2], { dtype: 'bf16' });
    expect(Array.from(await a.data())).toEqual([1, 1 + 2 ** -6]);
    using b = vl.tensor(new Float32Array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051]), [4], { dtype: 'f16' });
    expect(Array.from(await b.data())).toEqual([1, 1 + 2 ** -9, 2048, 2052]);
  });

  test('overflow becomes Inf, underflow keeps subnormals, signs survive', async () => {
    using a = vl.tensor(new Float32Array([65519, 65520, -70000, 2 ** -24, 2 ** -25, 3 * 2 ** -26, -0]), [7], { dtype: 'f16' });
    const v = await a.data();
    expect(Array.from(v.slice(0, 6))).toEqual([65504, Infinity, -Infinity, 2 ** -24, 0, 2 ** -24]);
    expect(Object.is(v[6], -0)).toBe(true);
  });

  test('JavaScript numbers are rounded once (no double rounding through f32)', async () => {
    // 1 + 2^-8 + 2^-30 lies just above a bf16 tie; rounding to f32 first would land on the tie and round down.
    using a = vl.tensor([1 + 2 ** -8 + 2 ** -30, 1 + 2 ** -11 + 2 ** -40], [2], { dtype: 'bf16' });
    expect((await a.data())[0]).toBe(1 + 2 ** -7);
    using b = vl.tensor([1 + 2 ** -11 + 2 ** -40], [1], { dtype: 'f16' });
    expect((await b.data())[0]).toBe(1 + 2 ** -10);
  });

  test('f32 -> bf16 on the device matches the conversion at creation', async () => {
    const src = randomFloat32(10000, 3);
    using a = vl.tensor(src, [100, 100]);
    using b = a.to('bf16');
    using direct = vl.tensor(src, [100, 100], { dtype: 'bf16' });
    expect(Buffer.from(await b.bytes()).equals(Buffer.from(await direct.bytes()))).toBe(true);
  });
});
