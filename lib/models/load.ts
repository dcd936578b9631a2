/** Builds a model from a preset or config file and loads its weights (strict). */
import * as fs from 'fs';
import { ArgumentError, FormatError } from '../errors';
import { load } from '../io';
import { CreateModelOptions } from './config';
import { create, VisionLlama } from './index';

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
