/**
 * The training loop: batches in, forward + loss + backward + optimizer step,
 * per-step learning-rate schedule, optional clipping, weight EMA and
 * stochastic depth, evaluation each epoch, metrics, checkpoints and resume.
 * Losses are read back asynchronously one step behind, so the JavaScript
 * thread queues step k+1 while the kernels of step k still run.
 */
import { autocast, MathPrecision, resolvePrecision } from '../autocast';
import { tensor } from '../creation';
import { ArgumentError, DeviceError } from '../errors';
import { noGrad } from '../autograd/grad-mode';
import { crossEntropy, softTargetCrossEntropy } from '../nn/losses';
import { Module } from '../nn/module';
import { AdamW } from '../optim/adamw';
import { Lamb } from '../optim/lamb';
import { SGD } from '../optim/sgd';
import { Optimizer } from '../optim/optimizer';
import { clipGradNorm } from '../optim/clip';
import { GradScaler, GradScalerOptions, GradScalerState } from '../optim/grad-scaler';
import { WeightEma } from '../optim/ema';
import { tidy } from '../scope';
import { Tensor } from '../tensor';
import { Rng, RngState } from '../data/rng';
import { saveCheckpoint, loadCheckpoint, hasCheckpoint, TrainState } from './checkpoint';
import { LrSchedule, warmupCosine } from './schedule';

/** One batch on the host, as the data loader delivers it. */
export interface HostBatch {
  images: Float32Array;
  shape: readonly number[];
  labels: Int32Array;
  /** Soft targets [B, K] (mixup/cutmix); when present the loss uses them. */
  targets?: Float32Array;
}

/** What the trainer reads batches from (a data.DataLoader, or anything shaped like it). */
export interface BatchSource {
  numBatches: number;
  /** The batches of epoch `epoch` (0-based), from batch `startBatch` on. */
  epoch(epoch: number, options?: { startBatch?: number }): AsyncIterable<HostBatch>;
}

/** The layers the trainer drives: a classifier with blocks that take stochastic depth. */
export interface TrainableModel extends Module {
  forward(images: Tensor): Tensor;
}

export interface TrainerOptions {
  epochs: number;
  optimizer?: 'adamw' | 'lamb' | 'sgd';
  lr?: number;
  minLr?: number;
  warmupEpochs?: number;
  weightDecay?: number;
  momentum?: number;
  labelSmoothing?: number;
  clipGrad?: number | null;
  /** Stochastic depth: the rate of the last block (linearly from 0 at the first). */
  dropPath?: number;
  emaDecay?: number | null;
  seed?: number;
  /** Where checkpoints go (and are resumed from with `resume`). */
  outDir?: string | null;
  resume?: boolean;
  /** Called after every step and at the end of each epoch. */
  onStep?: (info: StepInfo) => void;
  onEpoch?: (info: EpochInfo) => void | Promise<void>;
  /** Extra plain data stored in each checkpoint (e.g. the model config). */
  extraState?: Record<string, unknown>;
  /**
   * Arithmetic of the forward and backward GEMMs: 'bf16' is mixed precision
   * (autocast; parameters, optimizer state, norms, softmax and the loss stay f32).
   */
  precision?: MathPrecision;
  /**
   * Dynamic loss scaling (GradScaler; an object sets its options): on by
   * default for the 'f16' precision, whose gradients can overflow, off
   * otherwise. Steps with inf or NaN gradients are skipped on the device.
   */
  lossScale?: boolean | GradScalerOptions;
}

export interface StepInfo {
  epoch: number;
  batch: number;
  batches: number;
  step: number;
  loss: number;
  lr: number;
  images: number;
  /** Training throughput of the epoch so far. */
  imgPerSec: number;
}

export interface EpochInfo {
  epoch: number;
  trainLoss: number;
  eval?: EvalResult;
  seconds: number;
  imagesPerSecond: number;
}

export interface EvalResult {
  loss: number;
  accuracy: number;
  count: number;
}

/** Blocks of the model with a stochastic-depth rate (BlockBase). */
interface DropPathBlock {
  dropPathRate: number;
  dropPathMask: Float32Array | null;
}

function blocksOf(model: Module): DropPathBlock[] {
  const out: DropPathBlock[] = [];
  const visit = (m: unknown) => {
    if (!m || typeof m !== 'object') return;
    if ('dropPathRate' in m && 'dropPathMask' in m) out.push(m as DropPathBlock);
    for (const v of Object.values(m)) if (v instanceof Module) visit(v);
    const items = (m as { items?: unknown[] }).items;
    if (Array.isArray(items)) items.forEach(visit);
  };
  visit(model);
  return out;
}

function checkPositive(v: unknown, what: string, allowZero = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new ArgumentError(`train: ${what} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(v)}`);
  }
  return v;
}

export class Trainer {
  readonly optimizer: Optimizer;
  readonly ema: WeightEma | null;
  readonly scaler: GradScaler | null;
  readonly options: Required<Pick<TrainerOptions, 'epochs' | 'lr' | 'minLr' | 'warmupEpochs' | 'labelSmoothing' | 'dropPath' | 'seed'>> & TrainerOptions;
  #schedule: LrSchedule | null = null;
  #rng: Rng;
  #blocks: DropPathBlock[];
  state: TrainState = { epoch: 0, batchInEpoch: 0, step: 0 };

  /** The device of the model's parameters, where batches are copied. */
  readonly device: string;

  constructor(readonly model: TrainableModel, options: TrainerOptions) {
    const o = {
      lr: 1e-3, minLr: 1e-6, warmupEpochs: 0, labelSmoothing: 0, dropPath: 0, seed: 0, ...options,
    };
    resolvePrecision(o.precision, 'train');
    if (!Number.isSafeInteger(o.epochs) || o.epochs < 1) throw new ArgumentError(`train: epochs must be a positive integer, got ${String(o.epochs)}`);
    checkPositive(o.lr, 'lr');
    checkPositive(o.minLr, 'minLr', true);
    checkPositive(o.warmupEpochs, 'warmupEpochs', true);
    if (!(o.dropPath >= 0 && o.dropPath < 1)) throw new ArgumentError(`train: dropPath must be in [0, 1), got ${o.dropPath}`);
    this.options = o;
    const params = [...model.namedParameters()];
    // Batches go where the model is; a model split over devices is not trained here.
    this.device = params.length ? params[0][1].device : 'cpu';
    const elsewhere = params.find(([, p]) => p.device !== this.device);
    if (elsewhere) throw new DeviceError(`train: the model's parameters are on several devices (${this.device}, and '${elsewhere[0]}' on ${elsewhere[1].device}); move them to one`);
    const kind = o.optimizer ?? 'adamw';
    const wd = o.weightDecay ?? 0.05;
    if (kind === 'adamw') this.optimizer = new AdamW(params, { lr: o.lr, weightDecay: wd });
    else if (kind === 'lamb') this.optimizer = new Lamb(params, { lr: o.lr, weightDecay: wd });
    else if (kind === 'sgd') this.optimizer = new SGD(params, { lr: o.lr, weightDecay: wd, momentum: o.momentum ?? 0.9 });
    else throw new ArgumentError(`train: optimizer must be 'adamw', 'lamb' or 'sgd', got ${String(kind)}`);
    this.ema = o.emaDecay ? new WeightEma(params, o.emaDecay) : null;
    // The precision itself is checked above; a string compare keeps this independent of which precisions exist.
    const lossScale = o.lossScale ?? (o.precision as string | undefined) === 'f16';
    if (typeof lossScale !== 'boolean' && (lossScale === null || typeof lossScale !== 'object')) {
      throw new ArgumentError(`train: lossScale must be a boolean or GradScaler options, got ${String(lossScale)}`);
    }
    this.scaler = lossScale === false ? null : new GradScaler(lossScale === true ? {} : lossScale);
    this.#rng = new Rng(o.seed);
    this.#blocks = blocksOf(model);
    const n = this.#blocks.length;
    this.#blocks.forEach((b, i) => { b.dropPathRate = n > 1 ? (o.dropPath * i) / (n - 1) : o.dropPath; });
  }

  /** The learning-rate schedule for `batches` steps per epoch: linear warm-up, then cosine to minLr. */
  scheduleFor(batchesPerEpoch: number): LrSchedule {
    const o = this.options;
    const totalSteps = o.epochs * batchesPerEpoch;
    // A warm-up as long as the whole run (tiny runs) leaves the last step for the cosine.
    const warmupSteps = Math.min(Math.round(o.warmupEpochs * batchesPerEpoch), totalSteps - 1);
    return warmupCosine({ baseLr: o.lr, minLr: Math.min(o.minLr, o.lr), warmupSteps, totalSteps });
  }

  /** Draws this step's per-sample keep masks for every block with stochastic depth. */
  private drawMasks(batch: number): void {
    for (const b of this.#blocks) {
      if (b.dropPathRate <= 0) { b.dropPathMask = null; continue; }
      const m = new Float32Array(batch);
      for (let i = 0; i < batch; ++i) m[i] = this.#rng.uniform(0, 1) >= b.dropPathRate ? 1 : 0;
      b.dropPathMask = m;
    }
  }

  /** One optimizer step on a host batch; returns the loss tensor (a scalar, not yet read). */
  trainStep(batch: HostBatch, lr: number): Tensor {
    const model = this.model;
    const [B] = batch.shape;
    this.optimizer.lr = lr;
    this.drawMasks(B);
    const loss = autocast(this.options.precision ?? 'f32', () => tidy(() => {
      const x = tensor(batch.images, [...batch.shape], { device: this.device });
      const logits = model.forward(x);
      let l: Tensor;
      if (batch.targets) {
        const t = tensor(batch.targets, [B, logits.shape[1]], { device: this.device });
        l = softTargetCrossEntropy(logits, t);
      } else {
        l = crossEntropy(logits, batch.labels, { labelSmoothing: this.options.labelSmoothing });
      }
      (this.scaler ? this.scaler.scale(l) : l).backward();
      return l.detach();
    }));
    const scaler = this.scaler;
    if (this.options.clipGrad) {
      scaler?.unscale(this.optimizer);  // clip the true gradients
      clipGradNorm(model.namedParameters(), this.options.clipGrad);
    }
    if (scaler) {
      scaler.step(this.optimizer);
      scaler.update();
    } else {
      this.optimizer.step();
    }
    this.optimizer.zeroGrad();
    this.ema?.update(model.namedParameters());
    this.state.step += 1;
    return loss;
  }

  /** Loss and top-1 accuracy over a source (eval mode, no recording). */
  async evaluate(source: BatchSource): Promise<EvalResult> {
    const model = this.model;
    const wasTraining = model.training;
    model.eval();
    let loss = 0, correct = 0, count = 0;
    try {
      for await (const batch of source.epoch(0)) {
        const [B] = batch.shape;
        const [logitsT, lossT] = autocast(this.options.precision ?? 'f32', () => noGrad(() => tidy(() => {
          const logits = model.forward(tensor(batch.images, [...batch.shape], { device: this.device }));
          return [logits, crossEntropy(logits, batch.labels, { reduction: 'sum' })];
        })));
        const [logits, l] = await Promise.all([logitsT.data(), lossT.data()]);
        logitsT.dispose();
        lossT.dispose();
        const K = logits.length / B;
        for (let i = 0; i < B; ++i) {
          let best = 0;
          for (let k = 1; k < K; ++k) if (logits[i * K + k] > logits[i * K + best]) best = k;
          if (best === batch.labels[i]) correct += 1;
        }
        loss += l[0];
        count += B;
      }
    } finally {
      model.train(wasTraining);
    }
    return { loss: count ? loss / count : NaN, accuracy: count ? correct / count : NaN, count };
  }

  /**
   * Trains for the configured epochs (continuing a checkpoint in outDir with
   * `resume`). `stopAfter` ends this call after that many epochs in total,
   * with a checkpoint, as if interrupted: the schedule still spans `epochs`.
   */
  async fit(train: BatchSource, evalSource?: BatchSource, options: { stopAfter?: number } = {}): Promise<{ epochs: EpochInfo[] }> {
    const o = this.options;
    const perEpoch = train.numBatches;
    if (!(perEpoch > 0)) throw new ArgumentError('train: the training data has no batches');
    this.#schedule = this.scheduleFor(perEpoch);
    if (o.resume && o.outDir && hasCheckpoint(o.outDir)) {
      this.state = await loadCheckpoint(o.outDir, { model: this.model, optimizer: this.optimizer, ema: this.ema ?? undefined });
      const rng = this.state.rng as RngState | undefined;
      if (rng) this.#rng.setState(rng);
      const scalerState = this.state.gradScaler as GradScalerState | undefined;
      if (scalerState && this.scaler) this.scaler.loadStateDict(scalerState);
    }
    const history: EpochInfo[] = (this.state.history as EpochInfo[] | undefined) ?? [];
    this.model.train();
    const end = Math.min(o.epochs, options.stopAfter ?? o.epochs);
    while (this.state.epoch < end) {
      const epoch = this.state.epoch;
      const start = Date.now();
      let sum = 0, seen = 0, imgs = 0;
      let pending: Promise<void> | null = null;
      for await (const batch of train.epoch(epoch, { startBatch: this.state.batchInEpoch })) {
        const lr = this.#schedule.lrAt(this.state.step);
        const loss = this.trainStep(batch, lr);
        this.state.batchInEpoch += 1;
        imgs += batch.shape[0];
        const info = {
          epoch, batch: this.state.batchInEpoch - 1, batches: perEpoch, step: this.state.step, lr, images: batch.shape[0],
          imgPerSec: imgs / Math.max((Date.now() - start) / 1000, 1e-3),
        };
        // Read this step's loss while the next one is queued; wait for the previous read first.
        if (pending) await pending;
        pending = loss.data().then((v) => {
          loss.dispose();
          sum += v[0];
          seen += 1;
          o.onStep?.({ ...info, loss: v[0] });
        });
      }
      if (pending) await pending;
      const seconds = (Date.now() - start) / 1000;
      const result: EpochInfo = { epoch: epoch + 1, trainLoss: seen ? sum / seen : NaN, seconds, imagesPerSecond: imgs / Math.max(seconds, 1e-9) };
      if (evalSource) result.eval = await this.evaluate(evalSource);
      history.push(result);
      this.state = { ...this.state, epoch: epoch + 1, batchInEpoch: 0, history, rng: this.#rng.getState() };
      if (o.outDir) await this.save(o.outDir);
      await o.onEpoch?.(result);
    }
    return { epochs: history };
  }

  /** Writes a checkpoint of the current state (model, optimizer, EMA, loss scale, position, RNG). */
  async save(dir: string): Promise<void> {
    await this.scaler?.settle();  // the step counts and scale take in every skipped step first
    const state = {
      ...this.state, rng: this.#rng.getState(), config: this.options.extraState, schedule: this.#schedule?.toJSON(),
      ...(this.scaler ? { gradScaler: this.scaler.stateDict() } : {}),
    };
    await saveCheckpoint(dir, { model: this.model, optimizer: this.optimizer, ema: this.ema ?? undefined, state });
  }

  dispose(): void {
    this.scaler?.dispose();
    this.optimizer.dispose();
    this.ema?.dispose();
  }
}
