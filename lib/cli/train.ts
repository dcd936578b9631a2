/** `visionllama train` and `visionllama demo` (the Fashion-MNIST run of the README). */
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { MATH_PRECISIONS, MathPrecision } from '../autocast';
import { ArgumentError } from '../errors';
import { loadFashionMnistSync } from '../data/fashion-mnist';
import { load } from '../io';
import { runTraining, TrainRunOptions } from '../train/run';
import { intFlag, parseDevice, ParsedFlags, parseFlags } from './flags';
import { predictCommand } from './predict';

export const trainUsage = `usage: visionllama train --model PRESET|CONFIG.json --data fashion-mnist|DIR [--epochs 10] [--batch 128]
                        [--lr 1e-3] [--opt adamw|lamb|sgd] [--out DIR] [--resume] [--weights FILE] ...

  DIR holds train/ and val/, each with one sub-folder of images per class. Options:
    --min-lr 1e-6  --warmup-epochs 1  --wd 0.05  --momentum 0.9 (sgd)  --label-smoothing 0.1
    --drop-path 0  --mixup ALPHA  --cutmix ALPHA  --clip-grad NORM  --ema DECAY  --seed 0
    --layer-scale 1e-4 (initial LayerScale of a new model)  --pad 2 (Fashion-MNIST random-crop padding; 0: no crop)
    --image-size 224 (image folders)  --workers N  --limit-train N  --limit-test N  --no-progress
    --precision f32|bf16|f16 (mixed precision: GEMMs and attention on bf16 or f16 operands, f32 master
      weights; f16 adds dynamic loss scaling)
    --loss-scale auto|off|dynamic|S (dynamic loss scaling; auto: on for f16 only; S: dynamic, starting at S)
    --device cpu|cuda|cuda:N (where the model trains; batches are copied there)
  Writes to --out (default ./visionllama-train): model.safetensors, model.json (config, preprocessing,
  classes), labels.txt, metrics.jsonl, curves.png and checkpoint/ (--resume continues from it).
`;

const VALUES = ['model', 'data', 'epochs', 'batch', 'lr', 'min-lr', 'opt', 'out', 'weights', 'warmup-epochs', 'wd', 'momentum',
  'label-smoothing', 'drop-path', 'mixup', 'cutmix', 'clip-grad', 'ema', 'seed', 'image-size', 'workers', 'limit-train', 'limit-test',
  'layer-scale', 'pad', 'precision', 'loss-scale', 'device'];
const SWITCHES = ['resume', 'no-progress', 'help'];

function numFlag(cmd: string, f: ParsedFlags, name: string, fallback: number | undefined): number | undefined {
  const raw = f.values.get(name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0) throw new ArgumentError(`${cmd}: --${name} must be a non-negative number, got '${raw}'`);
  return v;
}

function precisionFlag(cmd: string, raw: string): MathPrecision {
  if (!(MATH_PRECISIONS as readonly string[]).includes(raw)) {
    throw new ArgumentError(`${cmd}: --precision must be ${MATH_PRECISIONS.join(', ')}, got '${raw}'`);
  }
  return raw as MathPrecision;
}

/** --loss-scale: undefined (auto: the Trainer's default), false (off), true (dynamic) or a starting scale. */
function lossScaleFlag(cmd: string, raw: string | undefined): TrainRunOptions['lossScale'] {
  if (raw === undefined || raw === 'auto') return undefined;
  if (raw === 'off') return false;
  if (raw === 'dynamic') return true;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) {
    throw new ArgumentError(`${cmd}: --loss-scale must be auto, off, dynamic or a positive starting scale, got '${raw}'`);
  }
  return { initScale: v };
}

function readModelFlag(cmd: string, model: string | undefined): string | Record<string, unknown> {
  if (!model) throw new ArgumentError(`${cmd}: --model is required\n\n${trainUsage}`);
  if (!model.toLowerCase().endsWith('.json')) return model;
  try {
    return JSON.parse(fs.readFileSync(model, 'utf8'));
  } catch (err) {
    throw new ArgumentError(`${cmd}: cannot read the model config ${model}: ${(err as Error).message}`);
  }
}

function runOptions(cmd: string, f: ParsedFlags, defaults: Partial<TrainRunOptions>): TrainRunOptions {
  const opt = f.values.get('opt') ?? defaults.optimizer ?? 'adamw';
  if (opt !== 'adamw' && opt !== 'lamb' && opt !== 'sgd') throw new ArgumentError(`${cmd}: --opt must be adamw, lamb or sgd, got '${opt}'`);
  const limit = (name: string) => (f.values.has(name) ? intFlag(cmd, f, name, 0, 1) : (defaults as Record<string, number | undefined>)[name === 'limit-train' ? 'limitTrain' : 'limitTest']);
  return {
    ...defaults,
    model: f.values.has('model') ? readModelFlag(cmd, f.values.get('model')) : defaults.model ?? readModelFlag(cmd, undefined),
    data: f.values.get('data') ?? defaults.data ?? (() => { throw new ArgumentError(`${cmd}: --data is required\n\n${trainUsage}`); })(),
    epochs: intFlag(cmd, f, 'epochs', defaults.epochs ?? 10, 1),
    batchSize: intFlag(cmd, f, 'batch', defaults.batchSize ?? 128, 1),
    lr: numFlag(cmd, f, 'lr', defaults.lr ?? 1e-3),
    minLr: numFlag(cmd, f, 'min-lr', defaults.minLr ?? 1e-6),
    optimizer: opt,
    out: f.values.get('out') ?? defaults.out ?? 'visionllama-train',
    warmupEpochs: numFlag(cmd, f, 'warmup-epochs', defaults.warmupEpochs ?? 1),
    weightDecay: numFlag(cmd, f, 'wd', defaults.weightDecay ?? 0.05),
    momentum: numFlag(cmd, f, 'momentum', 0.9),
    labelSmoothing: numFlag(cmd, f, 'label-smoothing', defaults.labelSmoothing ?? 0.1),
    dropPath: numFlag(cmd, f, 'drop-path', defaults.dropPath ?? 0),
    mixup: numFlag(cmd, f, 'mixup', defaults.mixup),
    cutmix: numFlag(cmd, f, 'cutmix', defaults.cutmix),
    clipGrad: numFlag(cmd, f, 'clip-grad', defaults.clipGrad ?? undefined) ?? null,
    emaDecay: numFlag(cmd, f, 'ema', undefined) ?? null,
    seed: intFlag(cmd, f, 'seed', defaults.seed ?? 0, 0),
    layerScaleInit: numFlag(cmd, f, 'layer-scale', defaults.layerScaleInit),
    cropPadding: f.values.has('pad') ? intFlag(cmd, f, 'pad', 2, 0) : defaults.cropPadding,
    imageSize: f.values.has('image-size') ? intFlag(cmd, f, 'image-size', 224, 8) : defaults.imageSize,
    workers: f.values.has('workers') ? intFlag(cmd, f, 'workers', 1, 0) : defaults.workers,
    limitTrain: limit('limit-train'),
    limitTest: limit('limit-test'),
    resume: f.switches.has('resume'),
    progress: !f.switches.has('no-progress'),
    precision: precisionFlag(cmd, f.values.get('precision') ?? defaults.precision ?? 'f32'),
    lossScale: f.values.has('loss-scale') ? lossScaleFlag(cmd, f.values.get('loss-scale')) : defaults.lossScale,
    device: f.values.has('device') ? parseDevice(cmd, f.values.get('device')!) : defaults.device,
  };
}

export async function trainCommand(argv: string[]): Promise<number> {
  const f = parseFlags('train', argv, { values: VALUES, switches: SWITCHES });
  if (f.switches.has('help')) {
    process.stdout.write(trainUsage);
    return 0;
  }
  const o = runOptions('train', f, {});
  if (f.values.has('weights')) o.weights = await load(f.values.get('weights')!);
  let r;
  try {
    r = await runTraining(o);
  } finally {
    for (const t of o.weights?.values() ?? []) t.dispose();  // copied into the model
  }
  process.stdout.write(`test accuracy: ${r.testAccuracy.toFixed(4)}\n`);
  process.stdout.write(`wrote ${r.files.weights}, ${r.files.config}, ${r.files.metrics}, ${r.files.curves}\n`);
  r.model.dispose();
  return 0;
}

/**
 * The demo's model: a small plain VisionLLaMA on 28x28 Fashion-MNIST, 7x7
 * patches (a 4x4 grid of tokens + the class token), 2-D RoPE, SwiGLU,
 * LayerScale. Per epoch 4x4 patches learn more, but at this width they cost
 * 2.5x more per image, and a narrower 4x4 model learns less per epoch.
 */
export const DEMO_MODEL = { arch: 'plain', dim: 96, depth: 6, heads: 3, patchSize: 7, inChans: 1, numClasses: 10 };

export const demoUsage = `usage: visionllama demo [--out DIR] [--epochs N] [--batch N] [--seed N] [train options]

  Trains a small plain VisionLLaMA (${DEMO_MODEL.dim} wide, ${DEMO_MODEL.depth} blocks, 7x7 patches) on Fashion-MNIST
  (Debian's dataset-fashion-mnist when installed, else the copy in data/fashion-mnist), prints the test
  accuracy, writes the weights, metrics and curves to --out (default ./visionllama-demo), then classifies
  a few test images with \`visionllama predict\`.
`;

export async function demoCommand(argv: string[]): Promise<number> {
  const f = parseFlags('demo', argv, { values: VALUES.filter((v) => v !== 'data'), switches: SWITCHES });
  if (f.switches.has('help')) {
    process.stdout.write(demoUsage);
    return 0;
  }
  const o = runOptions('demo', f, {
    // A from-scratch recipe for a few minutes of CPU: LayerScale starting at 1 (1e-4 makes a small
    // model's first epochs slow); flips only (random crops slow it down more than they help in 15
    // epochs). Batches of 64 learn no more per epoch than 128 and take 20% longer.
    model: DEMO_MODEL, data: 'fashion-mnist', epochs: 15, batchSize: 128, lr: 2e-3, minLr: 1e-5, warmupEpochs: 0.5,
    weightDecay: 0.05, labelSmoothing: 0.1, layerScaleInit: 1, cropPadding: 0, out: 'visionllama-demo',
  });
  const started = Date.now();
  const r = await runTraining(o);
  r.model.dispose();
  const minutes = (Date.now() - started) / 60000;
  process.stdout.write(`test accuracy: ${r.testAccuracy.toFixed(4)}\n`);
  process.stdout.write(`trained in ${minutes.toFixed(1)} min; wrote ${r.files.weights}, ${r.files.config}, ${r.files.metrics}, ${r.files.curves}\n`);
  // A few test images as PNG files, classified by the predict command from the saved files.
  const test = loadFashionMnistSync('test');
  const dir = path.join(o.out, 'samples');
  fs.mkdirSync(dir, { recursive: true });
  const images: string[] = [];
  for (let i = 0; i < 4; ++i) {
    const file = path.join(dir, `test-${i}-${test.classes[test.labels[i]].replace(/[^A-Za-z0-9]+/g, '_')}.png`);
    await sharp(Buffer.from(test.images.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(file);
    images.push(file);
  }
  process.stdout.write(`\nvisionllama predict --model ${r.files.config} --weights ${r.files.weights} --topk 3 ${images.map((p) => path.relative('.', p)).join(' ')}\n`);
  return predictCommand(['--model', r.files.config, '--weights', r.files.weights, '--topk', '3', ...images]);
}
