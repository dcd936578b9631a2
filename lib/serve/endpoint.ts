/**
 * One served model: the network, its preprocessing and class names, and the
 * batcher in front of it. A batch computes the pooled features once and the
 * class probabilities from them, so classify and embed requests share batches.
 */
import { ArgumentError } from '../errors';
import { tensor } from '../creation';
import { tidy } from '../scope';
import { EvalTransform } from '../data/decode';
import type { VisionLlama } from '../models';
import type { WeightDType } from '../nn/layers';
import { loadModel, readLabels, readModelExtras } from '../models/load';
import { BatcherOptions, BatchObserver, DynamicBatcher } from './batcher';

export interface ModelSpec {
  /** The name in /v1/models/:name/... (default: the preset, or the config file's base name). */
  name?: string;
  /** A preset ('pyramid-s') or a model config JSON file. */
  model: string;
  /** .pth or .safetensors; without it the model keeps its random initialization. */
  weights?: string;
  dtype?: WeightDType;
  /** Where the model runs ('cpu', 'cuda', 'cuda:N'; default 'cpu'): batches are copied there and results back. */
  device?: string;
  /** Which state dict of a .pth to load ('model', 'ema', 'state_dict'). */
  key?: string;
  /** Class names, one per line; default: the config's `classes`, else the indices. */
  labels?: string;
  /** Shorter side before the center crop, and the crop (defaults: the config's preprocess, else 256 and 224). */
  resize?: number;
  crop?: number;
}

/** What a batch gives each request: class probabilities and the pooled feature vector. */
export interface InferenceOutput {
  probs: Float32Array;
  embedding: Float32Array;
}

export function defaultModelName(model: string): string {
  const base = model.replace(/\\/g, '/').split('/').pop()!;
  return base.toLowerCase().endsWith('.json') ? base.slice(0, -5) : base;
}

/** Softmax of one row in float64 (the max subtracted first). */
function softmaxRow(src: Float32Array, offset: number, n: number): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < n; ++i) max = Math.max(max, src[offset + i]);
  const e = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; ++i) sum += e[i] = Math.exp(src[offset + i] - max);
  return Float32Array.from(e, (v) => v / sum);
}

export class ModelEndpoint {
  readonly batcher: DynamicBatcher<Float32Array, InferenceOutput>;
  readonly imageShape: [number, number, number];
  private staging = new Float32Array(0);

  private constructor(
    readonly name: string,
    readonly model: VisionLlama,
    readonly device: string,
    readonly transform: Required<Pick<EvalTransform, 'resize' | 'crop'>> & EvalTransform,
    readonly labels: string[] | undefined,
    batching: BatcherOptions,
    observer: BatchObserver,
  ) {
    const crop = transform.crop;
    this.imageShape = [transform.mean?.length ?? 3, crop, crop];
    this.batcher = new DynamicBatcher(batching, (inputs) => this.runBatch(inputs), observer);
  }

  /** Loads the model (strict weights), checking the preprocessing against it. */
  static async load(spec: ModelSpec, batching: BatcherOptions, observer: BatchObserver = {}): Promise<ModelEndpoint> {
    const extras = readModelExtras(spec.model);
    const pre = extras.preprocess ?? {};
    const transform = { resize: spec.resize ?? pre.resize ?? 256, crop: spec.crop ?? pre.crop ?? 224, mean: pre.mean, std: pre.std };
    if (!(Number.isInteger(transform.crop) && transform.crop > 0)) {
      throw new ArgumentError(`serve: model '${spec.model}' needs a crop size > 0 (every image of a batch has the same size), got ${transform.crop}`);
    }
    const labels = spec.labels ? readLabels(spec.labels) : extras.classes;
    const name = spec.name ?? defaultModelName(spec.model);
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new ArgumentError(`serve: model name '${name}' may only use letters, digits, '.', '_' and '-'`);
    const device = spec.device ?? 'cpu';
    const model = (await loadModel(spec.model, spec.weights, { dtype: spec.dtype ?? 'f32', key: spec.key, device })).eval();
    // Decoding competes with a batch for the CPU's cores only when the batch runs there.
    const own = device === 'cpu' ? batching : { ...batching, lock: undefined };
    const ep = new ModelEndpoint(name, model, device, transform, labels, own, observer);
    if (labels && labels.length !== ep.numClasses) {
      model.dispose();
      throw new ArgumentError(`serve: ${spec.labels ?? spec.model} names ${labels.length} classes but model '${name}' has ${ep.numClasses}`);
    }
    return ep;
  }

  get numClasses(): number {
    return this.model.config.numClasses;
  }

  label(index: number): string {
    return this.labels?.[index] ?? String(index);
  }

  private async runBatch(inputs: Float32Array[]): Promise<InferenceOutput[]> {
    const [c, h, w] = this.imageShape;
    const plane = c * h * w;
    // One staging buffer for the endpoint's life: a fresh batch-sized array
    // each time would cost its page faults on the batch's critical path.
    if (this.staging.length < inputs.length * plane) this.staging = new Float32Array(inputs.length * plane);
    const all = this.staging.subarray(0, inputs.length * plane);
    inputs.forEach((x, i) => {
      if (x.length !== plane) throw new ArgumentError(`serve: an input of ${x.length} values, expected ${plane} (${c}x${h}x${w})`);
      all.set(x, i * plane);
    });
    const [pooled, logits] = tidy(() => {
      const x = tensor(all, [inputs.length, c, h, w], { device: this.device });  // copied now: the buffer is free again
      const p = this.model.forwardPooled(x);
      return [p, this.model.forwardHead(p)];
    });
    try {
      const [pv, lv] = await Promise.all([pooled.data(), logits.data()]);
      const d = pooled.shape[1];
      const k = logits.shape[1];
      return inputs.map((_, i) => ({ probs: softmaxRow(lv, i * k, k), embedding: pv.slice(i * d, (i + 1) * d) }));
    } finally {
      pooled.dispose();
      logits.dispose();
    }
  }

  dispose(): void {
    this.model.dispose();
  }
}
