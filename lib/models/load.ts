/** Builds a model from a preset or config file and loads its weights (strict). */
import * as fs from 'fs';
import { ArgumentError, FormatError } from '../errors';
import { load } from '../io';
import { CreateModelOptions } from './config';
import { create, VisionLlama } from './index';

/** What a model config written by `visionllama train` says about its inputs and classes. */
export interface ModelExtras {
  preprocess?: { resize?: number; crop?: number; mean?: number[]; std?: number[] };
  classes?: string[];
}

/** The preprocessing and class names a config file carries ({} for a preset or a file without them). */
export function readModelExtras(model: string): ModelExtras {
  if (!model.toLowerCase().endsWith('.json')) return {};
  try {
    const c = JSON.parse(fs.readFileSync(model, 'utf8'));
    return { preprocess: c.preprocess, classes: Array.isArray(c.classes) ? c.classes.map(String) : undefined };
  } catch {
    return {};  // loadModel reports a bad file
  }
}

/** Class names, one per line (a trailing empty line is ignored). */
export function readLabels(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ArgumentError(`cannot read the labels file ${file}: ${(err as Error).message}`);
  }
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l, i, a) => l.length || i < a.length - 1);
}

/** `model`: a preset name ('pyramid-s') or a JSON config file shaped like the fixtures'. */
export async function loadModel(model: string, weights: string | undefined, options: CreateModelOptions & { key?: string } = {}): Promise<VisionLlama> {
  let config: string | Record<string, unknown> = model;
  if (model.toLowerCase().endsWith('.json')) {
    let text: string;
    try {
      text = await fs.promises.readFile(model, 'utf8');
    } catch (err) {
      throw new ArgumentError(`cannot read the model config ${model}: ${(err as Error).message}`);
    }
    try {
      config = JSON.parse(text);
    } catch (err) {
      throw new FormatError(`${model}: not valid JSON (${(err as Error).message})`);
    }
  }
  const m = create(config, options);
  if (weights) {
    const state = await load(weights, { key: options.key });
    try {
      m.loadStateDict(state);
    } catch (err) {
      m.dispose();
      throw err;
    } finally {
      for (const t of state.values()) t.dispose();
    }
  }
  return m;
}
