/** `visionllama predict`: classify image files, top-5 classes with probabilities. */
import { ArgumentError } from '../errors';
import { loadImageBatch } from '../data/image';
import { loadModel, readLabels, readModelExtras } from '../models/load';
import { softmax } from '../ops/nn';
import { intFlag, parseDevice, parseDType, parseFlags } from './flags';

export const predictUsage = `usage: visionllama predict --model CONFIG.json|PRESET --weights FILE [--labels labels.txt] [--json]
                          [--topk 5] [--resize 256] [--crop 224] [--batch 8] [--dtype f32|bf16|f16]
                          [--device cpu|cuda|cuda:N] IMAGE...

  Decodes JPEG, PNG or WebP, resizes the shorter side (bicubic), center-crops, normalizes with
  the ImageNet mean/std and prints the top classes. A model config written by \`visionllama train\`
  carries its own preprocessing (size, channels, mean/std) and class names, used unless flags
  say otherwise. An unreadable image is reported by name and the others still run (the exit
  code is then 1).
`;

export interface Prediction {
  image: string;
  top: { index: number; label: string; prob: number }[];
}

export async function predictCommand(argv: string[]): Promise<number> {
  const f = parseFlags('predict', argv, {
    values: ['model', 'weights', 'labels', 'topk', 'resize', 'crop', 'batch', 'dtype', 'key', 'device'],
    switches: ['json', 'help'],
  });
  if (f.switches.has('help')) {
    process.stdout.write(predictUsage);
    return 0;
  }
  if (!f.values.has('model')) throw new ArgumentError(`predict: --model is required\n\n${predictUsage}`);
  if (!f.positionals.length) throw new ArgumentError(`predict: no images given\n\n${predictUsage}`);
  const dtype = parseDType('predict', f.values.get('dtype') ?? 'f32');
  const device = parseDevice('predict', f.values.get('device') ?? 'cpu');
  const topk = intFlag('predict', f, 'topk', 5, 1);
  const batch = intFlag('predict', f, 'batch', 8, 1);
  const extras = readModelExtras(f.values.get('model')!);
  const pre = extras.preprocess ?? {};
  const transform = {
    resize: intFlag('predict', f, 'resize', pre.resize ?? 256), crop: intFlag('predict', f, 'crop', pre.crop ?? 224),
    mean: pre.mean, std: pre.std,
  };
  let labels: string[] | undefined = extras.classes;
  if (f.values.has('labels')) {
    labels = readLabels(f.values.get('labels')!);
  }
  using model = await loadModel(f.values.get('model')!, f.values.get('weights'), { dtype, key: f.values.get('key'), device });
  const results: Prediction[] = [];
  let failures = 0;
  for (let start = 0; start < f.positionals.length; start += batch) {
    const files = f.positionals.slice(start, start + batch);
    const decoded = await loadImageBatch(files, transform);
    for (const bad of decoded.failed) {
      failures += 1;
      process.stderr.write(`visionllama predict: ${bad.error.message}\n`);
    }
    if (!decoded.images) continue;
    using images = decoded.images;
    using onDevice = images.to({ device });
    using logits = model.forward(onDevice);
    using probs = softmax(logits);
    const p = await probs.data();
    const classes = probs.shape[1];
    decoded.ok.forEach((file, b) => {
      const row = Array.from(p.subarray(b * classes, (b + 1) * classes));
      const order = row.map((v, i) => [v, i] as const).sort((x, y) => y[0] - x[0]).slice(0, topk);
      results.push({
        image: file as string,
        top: order.map(([prob, index]) => ({ index, label: labels?.[index] ?? String(index), prob })),
      });
    });
  }
  if (f.switches.has('json')) {
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } else {
    for (const r of results) {
      process.stdout.write(`${r.image}\n`);
      for (const t of r.top) process.stdout.write(`  ${(t.prob * 100).toFixed(2).padStart(6)}%  ${t.label}\n`);
    }
  }
  return failures ? 1 : 0;
}
