/** `visionllama forward`: float32 .npy images in, logits .npy out (conformance checks, debugging). */
import { ArgumentError } from '../errors';
import { loadNpy, saveNpy } from '../io/npy';
import { loadModel } from '../models/load';
import { parseDevice, parseDType, parseFlags } from './flags';

export const forwardUsage = `usage: visionllama forward --model CONFIG.json|PRESET --weights FILE --input X.npy --output Y.npy [--dtype f32|bf16|f16]
                          [--device cpu|cuda|cuda:N]

  X.npy holds float32 images [B, 3, H, W] (already normalized); Y.npy receives the logits [B, classes].
  --device runs the model there (default cpu); the images go to it and the logits come back.
`;

export async function forwardCommand(argv: string[]): Promise<number> {
  const f = parseFlags('forward', argv, { values: ['model', 'weights', 'input', 'output', 'dtype', 'key', 'device'], switches: ['help'] });
  if (f.switches.has('help')) {
    process.stdout.write(forwardUsage);
    return 0;
  }
  for (const need of ['model', 'input', 'output']) {
    if (!f.values.has(need)) throw new ArgumentError(`forward: --${need} is required\n\n${forwardUsage}`);
  }
  if (f.positionals.length) throw new ArgumentError(`forward: unexpected argument '${f.positionals[0]}'`);
  const dtype = parseDType('forward', f.values.get('dtype') ?? 'f32');
  const device = parseDevice('forward', f.values.get('device') ?? 'cpu');
  using model = await loadModel(f.values.get('model')!, f.values.get('weights'), { dtype, key: f.values.get('key'), device });
  using x = await loadNpy(f.values.get('input')!);
  using onDevice = x.to({ device });
  using logits = model.forward(onDevice);
  await saveNpy(f.values.get('output')!, logits);
  return 0;
}
