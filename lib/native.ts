/**
 * Loads the compiled addon. Order: VLLAMA_ADDON (an explicit path to a
 * .node file), then node-gyp-build (a local build in build/Release, then
 * prebuilds/<platform>-<arch>/). A failure says what was tried and how to fix it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AddonLoadError, errorClassesByCode } from './errors';

/** One reference to a native tensor (see native/binding/tensor_handle.h). */
export interface NativeTensorHandle {
  dispose(): void;
  isDisposed(): boolean;
  /** [dtype, device, shape, strides, offset, contiguous] */
  meta(): [string, string, number[], number[], number, boolean];
  sharesStorage(other: NativeTensorHandle): boolean;
}

export interface NativeMemoryStats {
  tensors: number;
  bytes: number;
  allocatedBytes: number;
  peakAllocatedBytes: number;
  reservedBytes: number;
  cachedBytes: number;
  allocations: number;
  gcReleased: number;
}

export interface NativeBackendInfo {
  built: boolean;
  available: boolean;
  deviceCount: number;
  reason: string;
  /** One name per usable device (a GPU's product name; 'cpu' for the CPU). */
  devices: string[];
  kernels: string[];
}

export interface NativeAddon {
  cudaBuilt: boolean;
  setErrorClasses(classes: Record<string, unknown>): void;
  fromHost(data: ArrayBufferView, shape: number[], dtype: string, device: string): NativeTensorHandle;
  full(shape: number[], dtype: string, device: string, value: number): NativeTensorHandle;
  arange(start: number, step: number, length: number, dtype: string, device: string): NativeTensorHandle;
  random(shape: number[], dtype: string, device: string, normal: boolean, a: number, b: number, seed: number, stream: number): NativeTensorHandle;
  copy(t: NativeTensorHandle, dtype: string): NativeTensorHandle;
  contiguous(t: NativeTensorHandle): NativeTensorHandle;
  assign(dst: NativeTensorHandle, src: NativeTensorHandle): void;
  toDevice(t: NativeTensorHandle, device: string): NativeTensorHandle;
  reshape(t: NativeTensorHandle, shape: number[]): NativeTensorHandle;
  permute(t: NativeTensorHandle, dims: number[]): NativeTensorHandle;
  asStrided(t: NativeTensorHandle, shape: number[], strides: number[], offset: number): NativeTensorHandle;
  binary(op: string, a: NativeTensorHandle, b: NativeTensorHandle): NativeTensorHandle;
  concat(parts: NativeTensorHandle[], dim: number): NativeTensorHandle;
  sum(t: NativeTensorHandle, dims: number[], keepdim: boolean): NativeTensorHandle;
  read(t: NativeTensorHandle, dtype: string): Promise<ArrayBuffer>;
  readSync(t: NativeTensorHandle, dtype: string): ArrayBuffer;
  synchronize(device: string): Promise<void>;
  memory(): Record<string, NativeMemoryStats>;
  backendInfo(): { cpu: NativeBackendInfo; cuda: NativeBackendInfo };
  cpuInfo(): { isa: string; supportedIsas: string[]; avx512bf16: boolean; threads: number };
  setNumThreads(n: number): void;
  emptyCache(device: string): void;
}

const packageRoot = path.join(__dirname, '..');

function loadFailure(tried: string[], cause: unknown): AddonLoadError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const lines = [
    `visionllama: could not load the native addon for ${process.platform}-${process.arch} (Node ${process.version}, N-API).`,
    'Tried:',
    ...tried.map((t) => `  - ${t}`),
    `Cause: ${reason.split('\n')[0]}`,
    'Possible fixes:',
    '  - build it from source: `npm rebuild visionllama` (needs python3, make and a C++17 compiler),',
    '    or, in a checkout, `npm run build:native` (CPU) / `npm run build:cuda` (CPU + CUDA, needs nvcc);',
    '  - if you set VLLAMA_ADDON, point it at an existing visionllama.node;',
    '  - if you set VLLAMA_CPU_ISA, use one of the ISAs this CPU supports (scalar, avx2, avx512).',
  ];
  return new AddonLoadError(lines.join('\n'));
}

function load(): NativeAddon {
  const explicit = process.env.VLLAMA_ADDON;
  const tried: string[] = [];
  let addon: NativeAddon;
  try {
    if (explicit) {
      tried.push(`VLLAMA_ADDON=${explicit}${fs.existsSync(explicit) ? '' : ' (no such file)'}`);
      addon = require(path.resolve(explicit)) as NativeAddon;
    } else {
      tried.push(`${path.join(packageRoot, 'build', 'Release', 'visionllama.node')} (local build)`);
      tried.push(`${path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`)} (prebuilds)`);
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeAddon;
      addon = nodeGypBuild(packageRoot);
    }
  } catch (err) {
    throw loadFailure(tried, err);
  }
  addon.setErrorClasses(errorClassesByCode);
  return addon;
}

let cached: NativeAddon | undefined;

/** The loaded addon (loaded on first use). */
export function native(): NativeAddon {
  if (!cached) cached = load();
  return cached;
}
