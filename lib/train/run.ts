/**
 * A whole training run as the CLI does it: data loaders for Fashion-MNIST or
 * an image-folder dataset, the model, the Trainer, a progress bar, a JSONL
 * metrics log, checkpoints, the final weights with a config that records the
 * preprocessing and class names, and a PNG of the curves.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ArgumentError } from '../errors';
import { DataLoader } from '../data/loader';
import { ImageFolder } from '../data/image-folder';
import { FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, loadFashionMnistSync } from '../data/fashion-mnist';
import { DatasetSpec, TransformSpec } from '../data/spec';
import { IMAGENET_MEAN, IMAGENET_STD } from '../data/decode';
import { saveSafetensors } from '../io/safetensors';
import { create, VisionLlama } from '../models';
import { resolveConfig } from '../models/config';
import { MetricsLog } from './metrics-log';
import { plotCurves } from './plot';
import { ProgressBar } from './progress';
import { EpochInfo, Trainer, TrainerOptions } from './trainer';

export interface TrainRunOptions extends Omit<TrainerOptions, 'epochs' | 'outDir' | 'onStep' | 'onEpoch' | 'extraState'> {
  /** A preset name or a config object ({arch: 'plain', ...}). */
  model: string | Record<string, unknown>;
  /** 'fashion-mnist', or a folder with train/ and val/ sub-folders of class folders. */
  data: string;
  epochs: number;
  batchSize: number;
  out: string;
  /** Side of the training crops for image folders (default 224). */
  imageSize?: number;
  workers?: number;
  mixup?: number;
  cutmix?: number;
  /** Use only the first N training / test images (quick checks). */
  limitTrain?: number;
  limitTest?: number;
  /** Fashion-MNIST: padding of the random crop (default 2; 0: no crop). */
  cropPadding?: number;
  /** Initial LayerScale γ of a new model (default 1e-4). */
  layerScaleInit?: number;
  /** Where the model trains ('cpu', 'cuda', 'cuda:N'; default: the default device). */
  device?: string;
  /** Initial weights (a state dict of the model). */
  weights?: Map<string, import('../tensor').Tensor>;
  log?: (line: string) => void;
  progress?: boolean;
}

export interface TrainRunResult {
  model: VisionLlama;
  history: EpochInfo[];
  testAccuracy: number;
  files: { weights: string; config: string; labels: string; metrics: string; curves: string; checkpoint: string };
}

interface DataSetup {
  train: DataLoader;
  test: DataLoader;
  classes: string[];
  inChans: number;
  preprocess: { resize: number; crop: number; mean: number[]; std: number[] };
}

function limitArrays(split: 'train' | 'test', limit: number | undefined): DatasetSpec {
  if (!limit) return { kind: 'fashion-mnist', split };
  const fm = loadFashionMnistSync(split);
  const n = Math.min(limit, fm.count);
  return { kind: 'arrays', images: fm.images.subarray(0, n * 784), labels: fm.labels.subarray(0, n), height: 28, width: 28, numClasses: 10 };
}

function setupData(o: TrainRunOptions): DataSetup {
  const common = { batchSize: o.batchSize, seed: o.seed ?? 0, workers: o.workers };
  const mix = o.mixup || o.cutmix ? { mixupAlpha: o.mixup ?? 0, cutmixAlpha: o.cutmix ?? 0, labelSmoothing: o.labelSmoothing ?? 0 } : undefined;
  if (o.data === 'fashion-mnist') {
    const norm = { mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD };
    const trainT: TransformSpec = { kind: 'gray-train', pad: o.cropPadding ?? 2, flip: 0.5, ...norm };
    const testT: TransformSpec = { kind: 'gray-eval', ...norm };
    return {
      train: new DataLoader({ ...common, dataset: limitArrays('train', o.limitTrain), transform: trainT, shuffle: true, dropLast: true, mixup: mix }),
      test: new DataLoader({ ...common, dataset: limitArrays('test', o.limitTest), transform: testT, shuffle: false }),
      classes: [...FASHION_MNIST_CLASSES], inChans: 1,
      preprocess: { resize: 28, crop: 28, mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD] },
    };
  }
  const trainDir = path.join(o.data, 'train'), valDir = path.join(o.data, 'val');
  if (!fs.existsSync(trainDir) || !fs.existsSync(valDir)) {
    throw new ArgumentError(`train: --data must be 'fashion-mnist' or a folder with train/ and val/ sub-folders (one folder per class in each); ${o.data} has no ${fs.existsSync(trainDir) ? 'val/' : 'train/'}`);
  }
  const size = o.imageSize ?? 224;
  const resize = Math.round(size / 0.875);
  const train = new ImageFolder(trainDir), val = new ImageFolder(valDir);
  if (train.classes.join('\n') !== val.classes.join('\n')) {
    throw new ArgumentError(`train: ${trainDir} and ${valDir} must hold the same class folders`);
  }
  return {
    train: new DataLoader({ ...common, dataset: train, transform: { kind: 'rgb-train', size }, shuffle: true, dropLast: true, mixup: mix }),
    test: new DataLoader({ ...common, dataset: val, transform: { kind: 'rgb-eval', resize, crop: size }, shuffle: false }),
    classes: train.classes, inChans: 3,
    preprocess: { resize, crop: size, mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] },
  };
}

/** At most `n` points: means of consecutive runs of steps. */
function smooth(points: [number, number][], n: number): [number, number][] {
  const per = Math.max(1, Math.ceil(points.length / n));
  const out: [number, number][] = [];
  for (let i = 0; i < points.length; i += per) {
    const run = points.slice(i, i + per);
    out.push([run[run.length - 1][0], run.reduce((a, p) => a + p[1], 0) / run.length]);
  }
  return out;
}

export async function runTraining(o: TrainRunOptions): Promise<TrainRunResult> {
  const log = o.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const data = setupData(o);
  const files = {
    weights: path.join(o.out, 'model.safetensors'), config: path.join(o.out, 'model.json'), labels: path.join(o.out, 'labels.txt'),
    metrics: path.join(o.out, 'metrics.jsonl'), curves: path.join(o.out, 'curves.png'), checkpoint: path.join(o.out, 'checkpoint'),
  };
  fs.mkdirSync(o.out, { recursive: true });
  const config = { ...resolveConfig(o.model, { numClasses: data.classes.length }), inChans: data.inChans };
  const model = create(config, { seed: o.seed ?? 0, layerScaleInit: o.layerScaleInit, device: o.device });
  let trainer: Trainer | null = null;
  const metrics = new MetricsLog(files.metrics, { truncate: !o.resume });
  try {
    if (o.weights) model.loadStateDict(o.weights);
    log(`model: ${config.arch}, ${(model.parameterCount() / 1e6).toFixed(2)}M parameters; data: ${o.data} (${data.train.numSamples} training, ${data.test.numSamples} test images, ${data.classes.length} classes)`);
    let bar: ProgressBar | null = null;
    const stepLosses: [number, number][] = [];
    trainer = new Trainer(model, {
      ...o, outDir: files.checkpoint,
      extraState: { model: config, data: o.data },
      onStep: (s) => {
        stepLosses.push([s.epoch + (s.batch + 1) / s.batches, s.loss]);
        metrics.write({ epoch: s.epoch + 1, step: s.step, split: 'train', loss: s.loss, lr: s.lr });
        if (o.progress === false) return;
        if (!bar) bar = new ProgressBar({ total: s.batches, label: `epoch ${s.epoch + 1}/${o.epochs}` });
        bar.update(s.batch + 1, { loss: s.loss, lr: s.lr, imgPerSec: s.imgPerSec });
      },
      onEpoch: (e) => {
        const b = bar as ProgressBar | null;
        b?.finish({ loss: e.trainLoss, imgPerSec: e.imagesPerSecond });
        bar = null;
        metrics.write({ epoch: e.epoch, split: 'test', loss: e.eval?.loss, accuracy: e.eval?.accuracy, trainLoss: e.trainLoss, seconds: e.seconds, imgPerSec: e.imagesPerSecond });
        log(`epoch ${e.epoch}: train loss ${e.trainLoss.toFixed(4)}, test loss ${e.eval?.loss.toFixed(4)}, test accuracy ${e.eval?.accuracy.toFixed(4)} (${e.seconds.toFixed(1)} s, ${e.imagesPerSecond.toFixed(0)} img/s)`);
      },
    });
    const { epochs } = await trainer.fit(data.train, data.test);
    const last = epochs[epochs.length - 1];
    const testAccuracy = last?.eval?.accuracy ?? NaN;
    model.eval();
    await saveSafetensors(files.weights, new Map(model.namedParameters()), { format: 'visionllama' });
    // The weight EMA (when kept) is saved beside them under the same names.
    if (trainer.ema) await saveSafetensors(path.join(o.out, 'model-ema.safetensors'), trainer.ema.stateDict(), { format: 'visionllama' });
    fs.writeFileSync(files.config, `${JSON.stringify({ ...config, preprocess: data.preprocess, classes: data.classes }, null, 1)}\n`);
    fs.writeFileSync(files.labels, `${data.classes.join('\n')}\n`);
    await plotCurves(files.curves, [
      { title: 'loss', xLabel: 'epoch', lines: [
        { name: 'train (per step, smoothed)', points: smooth(stepLosses, 200) },
        { name: 'train (epoch mean)', points: epochs.map((e) => [e.epoch, e.trainLoss] as [number, number]) },
        { name: 'test', points: epochs.map((e) => [e.epoch, e.eval?.loss ?? NaN] as [number, number]) },
      ] },
      { title: 'test accuracy', xLabel: 'epoch', lines: [{ name: 'test', points: epochs.map((e) => [e.epoch, e.eval?.accuracy ?? NaN] as [number, number]) }] },
    ]);
    return { model, history: epochs, testAccuracy, files };
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    metrics.close();
    trainer?.dispose();
    await Promise.all([data.train.close(), data.test.close()]);
  }
}
