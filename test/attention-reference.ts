// The float64 AS2DRoPE reference shared by the attention tests (fp32 only
// where SPEC §1 fixes it: positions, frequencies, angles).
import { GridPositions } from '../lib/ops/attention';

export function gridPositions(count: number, g: GridPositions): { x: number[]; y: number[] } {
  const step = Math.fround(g.step ?? 1), bias = Math.fround(g.bias ?? 0), off = g.indexOffset ?? 0;
  const x: number[] = [], y: number[] = [];
  for (let i = 0; i < count; ++i) {
    const idx = i + off;
    const col = ((idx % g.cols) + g.cols) % g.cols, row = Math.floor(idx / g.cols);
    x.push(Math.fround(bias + Math.fround(col * step)));
    y.push(Math.fround(bias + Math.fround(row * step)));
  }
  return { x, y };
}

/**
 * x [B, T, H, D] row-major, every channel pair rotated per SPEC §1 (x
 * frequencies on pairs 2i, y on 2i+1); `transposed` applies the inverse
 * (transposed) rotation, which maps gradients of rotated values back.
 */
export function rope(x: ArrayLike<number>, B: number, T: number, H: number, D: number, px: number[], py: number[],
  transposed = false): Float64Array {
  const out = Float64Array.from(x as ArrayLike<number>);
  const freqs = Array.from({ length: D / 4 }, (_, i) => Math.fround(1 / Math.fround(Math.pow(10000, Math.fround((4 * i) / D)))));
  const sign = transposed ? -1 : 1;
  for (let b = 0; b < B; ++b)
    for (let t = 0; t < T; ++t)
      for (let h = 0; h < H; ++h) {
        const o = ((b * T + t) * H + h) * D;
        for (let i = 0; i < D / 4; ++i) {
          for (const [c, pos] of [[4 * i, px[t]], [4 * i + 2, py[t]]]) {
            const angle = Math.fround(Math.fround(pos) * freqs[i]);
            const cs = Math.cos(angle), sn = sign * Math.sin(angle);
            const a = x[o + c], bb = x[o + c + 1];
            out[o + c] = a * cs - bb * sn;
            out[o + c + 1] = a * sn + bb * cs;
          }
        }
      }
  return out;
}

export interface RefOptions { qx?: number[]; qy?: number[]; kx?: number[]; ky?: number[]; rope?: boolean; scale?: number }

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; ++i) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** A Float32Array from the base64 bytes a child process printed. */
export function decode(b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
}
