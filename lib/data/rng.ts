/**
 * Seeded random numbers for data pipelines: xoshiro128** (32-bit words, so
 * plain JavaScript integer arithmetic), seeded by hashing a key such as
 * (seed, epoch, sample index). Each key gives an independent stream, so a
 * sample's augmentation does not depend on batch order or worker count.
 */
import { ArgumentError } from '../errors';

export interface RngState {
  algorithm: 'xoshiro128**';
  /** The four state words (unsigned 32-bit integers, not all zero). */
  state: [number, number, number, number];
}

const TWO_32 = 4294967296;

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** MurmurHash3 (x86, 32-bit) of a word sequence with the given seed. */
function murmur3(words: number[], seed: number): number {
  let h = seed;
  for (let k of words) {
    k = Math.imul(rotl(Math.imul(k, 0xcc9e2d51), 15), 0x1b873593);
    h = Math.imul(rotl(h ^ k, 13), 5) + 0xe6546b64 | 0;
  }
  return fmix32(h ^ (words.length * 4));
}

/** Four independently seeded hashes of the key: 128 bits, so distinct keys do not collide in practice. */
function seedState(key: number[]): [number, number, number, number] {
  const words: number[] = [];
  for (const k of key) {
    if (!Number.isSafeInteger(k)) throw new ArgumentError(`Rng: seeds and stream keys must be safe integers, got ${k}`);
    words.push(k >>> 0, Math.floor(k / TWO_32) >>> 0);
  }
  const s: [number, number, number, number] = [
    murmur3(words, 0x9e3779b9), murmur3(words, 0x7f4a7c15), murmur3(words, 0x85ebca6b), murmur3(words, 0xc2b2ae35),
  ];
  if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
  return s;
}

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** The stream for `seed` and further keys: new Rng(seed, epoch, index) differs from new Rng(seed, epoch). */
  constructor(seed = 0, ...stream: number[]) {
    [this.s0, this.s1, this.s2, this.s3] = seedState([seed, ...stream]);
  }

  static fromState(state: RngState): Rng {
    const r = new Rng();
    r.setState(state);
    return r;
  }

  /** The next unsigned 32-bit integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [a, b). */
  uniform(a = 0, b = 1): number {
    return a + (b - a) * this.next();
  }

  /** Uniform integer in [0, n), unbiased. */
  int(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw new ArgumentError(`Rng.int: n must be a positive integer, got ${n}`);
    if (n > TWO_32) return Math.floor(this.next() * n);
    const limit = TWO_32 - (TWO_32 % n); // reject the top values that would favour small results
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % n;
    }
  }

  /** Normal deviate (Box-Muller). */
  normal(mean = 0, std = 1): number {
    const u = 1 - this.next(); // (0, 1]: log stays finite
    const v = this.next();
    return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Gamma(shape, 1) deviate (Marsaglia-Tsang). */
  gamma(shape: number): number {
    if (!(shape > 0)) throw new ArgumentError(`Rng.gamma: shape must be positive, got ${shape}`);
    if (shape < 1) return this.gamma(shape + 1) * Math.pow(1 - this.next(), 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - this.next();
      if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
    }
  }

  /** Beta(a, b) deviate, in [0, 1]. */
  beta(a: number, b: number): number {
    const x = this.gamma(a);
    const y = this.gamma(b);
    return x + y > 0 ? x / (x + y) : this.next() < a / (a + b) ? 1 : 0;
  }

  /** Shuffles in place (Fisher-Yates) and returns the array. */
  shuffle<T extends { length: number; [i: number]: unknown }>(array: T): T {
    for (let i = array.length - 1; i > 0; --i) {
      const j = this.int(i + 1);
      const t = array[i];
      array[i] = array[j];
      array[j] = t;
    }
    return array;
  }

  /** A plain JSON-serializable copy of the state (for checkpoints). */
  getState(): RngState {
    return { algorithm: 'xoshiro128**', state: [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0] };
  }

  setState(state: RngState): void {
    const s = state?.state;
    const word = (w: unknown) => Number.isInteger(w) && (w as number) >= 0 && (w as number) < TWO_32;
    if (state?.algorithm !== 'xoshiro128**' || !Array.isArray(s) || s.length !== 4 || !s.every(word) || s.every((w) => w === 0)) {
      throw new ArgumentError(`Rng.setState: not an xoshiro128** state: ${JSON.stringify(state)}`);
    }
    [this.s0, this.s1, this.s2, this.s3] = s.map((w) => w | 0);
  }
}
