/** Backends, memory counters, threads and synchronization. */
import { ArgumentError } from './errors';
import { NativeBackendInfo, NativeMemoryStats, native } from './native';

export type MemoryStats = NativeMemoryStats;

/**
 * Memory per device. `tensors`/`bytes`: tensors held by JavaScript and the
 * storage they keep alive (drops at once on dispose). `allocatedBytes`: what
 * the allocator has handed out, including storage still used by queued work
 * (drops once that work has run; `await synchronize()` first to compare).
 */
export function memory(): Record<string, MemoryStats> {
  return native().memory();
}

/** The backends usable on this machine, e.g. ['cpu'] or ['cpu', 'cuda']. */
export function backends(): string[] {
  const info = native().backendInfo();
  return (['cpu', 'cuda'] as const).filter((b) => info[b].available);
}

/** What each backend is: built into this addon, usable here, why not, and its kernels. */
export function backendInfo(): { cpu: NativeBackendInfo; cuda: NativeBackendInfo } {
  return native().backendInfo();
}

/** The CPU's instruction set in use and the size of the thread pool. */
export function cpuInfo(): { isa: string; supportedIsas: string[]; avx512bf16: boolean; threads: number } {
  return native().cpuInfo();
}

/** Resizes the CPU thread pool (after queued CPU work has finished). */
export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) {
    throw new ArgumentError(`setNumThreads: expected a positive integer, got ${threads}`);
  }
  native().setNumThreads(threads);
}

/** Resolves once all work queued so far on `device` (every device by default) has run. */
export async function synchronize(device?: string): Promise<void> {
  const n = native();
  const devices = device === undefined ? Object.keys(n.memory()) : [device];
  await Promise.all(devices.map((d) => n.synchronize(d)));
}

interface EventNative {
  recordEvent(device: string): object;
  eventElapsed(start: object, end: object): Promise<number>;
}

/**
 * A point in a device's stream order, for timing kernels: recorded without
 * waiting, stamped when the device gets there (a CUDA event on GPUs; the
 * stream thread's clock on the CPU, whose kernels run on that thread).
 */
export class DeviceEvent {
  /** @internal */
  constructor(readonly device: string, readonly handle: object) {}

  /** Milliseconds of device time from `start` (an earlier event of the same device) to this event. */
  elapsedSince(start: DeviceEvent): Promise<number> {
    if (!(start instanceof DeviceEvent)) throw new ArgumentError('elapsedSince: expected a DeviceEvent from recordEvent()');
    return (native() as unknown as EventNative).eventElapsed(start.handle, this.handle);
  }
}

/** Records an event on `device` (default: the default device) after the work queued so far. */
export function recordEvent(device: string = currentDevice): DeviceEvent {
  return new DeviceEvent(device, (native() as unknown as EventNative).recordEvent(device));
}

/** Returns a device's cached allocations to the system (CUDA's caching allocator). */
export function emptyCache(device: string): void {
  native().emptyCache(device);
}

let currentDevice = 'cpu';

/** The device that factory functions use when no `device` option is given. */
export function defaultDevice(): string {
  return currentDevice;
}

/**
 * Makes `device` the default for factory functions ('cpu', 'cuda', 'cuda:1').
 * Throws DeviceError when the device does not exist or is unavailable here.
 */
export function setDefaultDevice(device: string): void {
  currentDevice = checkDevice(device);
}

/**
 * The canonical name of `device` ('cuda' -> 'cuda:0') if it exists and is
 * usable here; else a DeviceError that says why.
 */
export function checkDevice(device: string): string {
  const probe = native().full([0], 'f32', device, 0); // unknown, unbuilt or missing devices throw
  try {
    return probe.meta()[1];
  } finally {
    probe.dispose();
  }
}
