/**
 * Typed errors. Each has a stable `code`; the native addon raises instances of
 * these classes directly (see setErrorClasses in native.ts).
 */
export class VisionLlamaError extends Error {
  readonly code: string;
  constructor(message: string, code = 'VL_ERROR') {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A shape, dimension or data length does not fit. */
export class ShapeError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_SHAPE'); }
}
/** An unknown dtype, or data that the requested dtype cannot hold. */
export class DTypeError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_DTYPE'); }
}
/** An unknown or unavailable device, or tensors on different devices. */
export class DeviceError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_DEVICE'); }
}
/** A tensor was used after dispose(). */
export class DisposedError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_DISPOSED'); }
}
/** An argument of the wrong type or out of range. */
export class ArgumentError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_ARGUMENT'); }
}
/** A device ran out of memory (after freeing its caches). */
export class OutOfMemoryError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_OOM'); }
}
/** No kernel for this op on this device in this build. */
export class NotImplementedError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_NOT_IMPLEMENTED'); }
}
/** Queued work failed while running (reported when its result is read). */
export class ExecutionError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_RUNTIME'); }
}
/** A file is not what it claims to be (truncated, bad header, sizes that do not add up). */
export class FormatError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_FORMAT'); }
}
/** A state dict does not fit a model: lists missing keys, unexpected keys and shape mismatches. */
export class StateDictError extends VisionLlamaError {
  readonly missing: string[];
  readonly unexpected: string[];
  readonly mismatched: { name: string; expected: number[]; got: number[] }[];
  constructor(message: string, report: { missing: string[]; unexpected: string[]; mismatched: { name: string; expected: number[]; got: number[] }[] }) {
    super(message, 'VL_STATE_DICT');
    this.missing = report.missing;
    this.unexpected = report.unexpected;
    this.mismatched = report.mismatched;
  }
}
/** The native addon could not be loaded. */
export class AddonLoadError extends VisionLlamaError {
  constructor(message: string) { super(message, 'VL_LOAD'); }
}

/** Classes by code, as handed to the native addon. */
export const errorClassesByCode = {
  VL_SHAPE: ShapeError,
  VL_DTYPE: DTypeError,
  VL_DEVICE: DeviceError,
  VL_DISPOSED: DisposedError,
  VL_ARGUMENT: ArgumentError,
  VL_OOM: OutOfMemoryError,
  VL_NOT_IMPLEMENTED: NotImplementedError,
  VL_RUNTIME: ExecutionError,
};
