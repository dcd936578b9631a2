/** `visionllama convert IN OUT.safetensors`: a PyTorch checkpoint (or safetensors) to safetensors. */
import * as fs from 'fs';
import * as path from 'path';
import { DType, dtypeSize } from '../dtype';
import { ArgumentError } from '../errors';
import { load, save } from '../io';

export const convertUsage = `usage: visionllama convert IN.pth OUT.safetensors [--key KEY] [--prefix PREFIX] [--dtype f32|bf16|f16]

  --key KEY        the top-level entry holding the weights ('model', 'ema', 'state_dict', ...);
                   by default the checkpoint itself when it is a state dict, else the first of
                   model, state_dict, model_ema, ema, module that holds tensors
  --prefix PREFIX  strip PREFIX from tensor names ('backbone.'); 'module.' goes by default when
                   every name has it
  --dtype DTYPE    store floating-point tensors as DTYPE (integer tensors keep theirs)
`;

const DTYPES: DType[] = ['f32', 'bf16', 'f16'];

export interface ConvertOptions {
  key?: string;
  prefix?: string;
  dtype?: DType;
}

export interface ConvertResult {
  tensors: number;
  bytes: number;
}

/** Converts a checkpoint to safetensors, writing through a temporary file so a failure leaves no partial output. */
export async function convertCheckpoint(input: string, output: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  // Checked before loading: the temporary name below would hide the extension from save().
  if (/\.(pth|pt|bin|ckpt)$/i.test(output)) throw new ArgumentError(`convert: ${output}: only safetensors is written; name the file .safetensors`);
  const tensors = await load(input, { key: options.key, prefix: options.prefix, dtype: options.dtype });
  const tmp = `${output}.tmp-${process.pid}`;
  try {
    const metadata: Record<string, string> = { format: 'pt', source: path.basename(input) };
    if (options.key !== undefined) metadata.key = options.key;
    await save(tmp, tensors, metadata);
    await fs.promises.rename(tmp, output);
    let bytes = 0;
    for (const t of tensors.values()) bytes += t.size * dtypeSize(t.dtype);
    return { tensors: tensors.size, bytes };
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/** The command: parses `argv` (after 'convert'), returns the exit code. */
export async function convertCommand(argv: string[]): Promise<number> {
  const usageError = (what: string): number => {
    process.stderr.write(`visionllama convert: ${what}\n\n${convertUsage}`);
    return 2;
  };
  const files: string[] = [];
  const options: ConvertOptions = {};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(convertUsage);
      return 0;
    }
    if (a === '--key' || a === '--prefix' || a === '--dtype') {
      const v = argv[++i];
      if (v === undefined) return usageError(`${a} needs a value`);
      if (a === '--key') options.key = v;
      else if (a === '--prefix') options.prefix = v;
      else if ((DTYPES as string[]).includes(v)) options.dtype = v as DType;
      else return usageError(`--dtype must be one of ${DTYPES.join(', ')}, not '${v}'`);
    } else if (a.startsWith('-') && a !== '-') {
      return usageError(`unknown option '${a}'`);
    } else {
      files.push(a);
    }
  }
  if (files.length !== 2) return usageError(`expected an input and an output file, got ${files.length} file argument(s)`);
  const [input, output] = files;
  if (path.resolve(input) === path.resolve(output)) return usageError('the output would overwrite the input');
  if (!fs.existsSync(input)) {
    process.stderr.write(`visionllama convert: no such file: ${input}\n`);
    return 1;
  }
  const r = await convertCheckpoint(input, output, options);
  const size = r.bytes >= 1e6 ? `${(r.bytes / 1e6).toFixed(1)} MB` : `${(r.bytes / 1e3).toFixed(1)} kB`;
  console.log(`wrote ${r.tensors} tensors (${size}) to ${output}`);
  return 0;
}
