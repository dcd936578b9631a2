/**
 * Training checkpoints: the model's parameters, the optimizer's state and the
 * weight EMA in one safetensors file, and everything else a resumed run needs
 * (epoch and batch position, schedule, RNG states, config, metrics) in a JSON
 * file beside it. Both are written to temporary names and renamed, so a crash
 * while saving leaves the previous checkpoint intact.
 */
import * as fs from 'fs';
import * as path from 'path';
import { FormatError, StateDictError } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { Module } from '../nn/module';
import { Optimizer } from '../optim/optimizer';
import { WeightEma } from '../optim/ema';
import { Tensor } from '../tensor';

export const CHECKPOINT_FORMAT = 'visionllama-train-1';

/** The JSON half: plain data that fully describes where training stands. */
export interface TrainState {
  format?: string;
  /** Epochs fully done. */
  epoch: number;
  /** Batches done in the current epoch (0 at an epoch boundary). */
  batchInEpoch: number;
  /** Optimizer steps done in total. */
  step: number;
  [key: string]: unknown;
}

export interface CheckpointParts {
  model: Module;
  optimizer?: Optimizer;
  ema?: WeightEma;
  state: TrainState;
}

export function checkpointPaths(dir: string): { tensors: string; json: string } {
  return { tensors: path.join(dir, 'checkpoint.safetensors'), json: path.join(dir, 'checkpoint.json') };
}

export async function saveCheckpoint(dir: string, parts: CheckpointParts): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of parts.model.namedParameters()) tensors.set(`model.${name}`, t);
  let optimizer: Record<string, unknown> | undefined;
  if (parts.optimizer) {
    const s = parts.optimizer.stateDict();
    optimizer = s.meta;
    for (const [k, t] of s.tensors) tensors.set(`optim.${k}`, t);
  }
  if (parts.ema) for (const [k, t] of parts.ema.stateDict()) tensors.set(`ema.${k}`, t);
  const files = checkpointPaths(dir);
  const tmp = { tensors: `${files.tensors}.tmp`, json: `${files.json}.tmp` };
  await saveSafetensors(tmp.tensors, tensors, { format: CHECKPOINT_FORMAT });
  const json = { format: CHECKPOINT_FORMAT, ...parts.state, optimizer, ema: parts.ema ? { decay: parts.ema.decay } : undefined };
  await fs.promises.writeFile(tmp.json, JSON.stringify(json, null, 1));
  await fs.promises.rename(tmp.tensors, files.tensors);
  await fs.promises.rename(tmp.json, files.json);
}

/** Whether `dir` holds a checkpoint to resume from. */
export function hasCheckpoint(dir: string): boolean {
  const f = checkpointPaths(dir);
  return fs.existsSync(f.tensors) && fs.existsSync(f.json);
}

/** Reads the JSON half (validated). */
export async function readTrainState(dir: string): Promise<TrainState & { optimizer?: Record<string, unknown> }> {
  const { json } = checkpointPaths(dir);
  let state: TrainState & { optimizer?: Record<string, unknown> };
  try {
    state = JSON.parse(await fs.promises.readFile(json, 'utf8'));
  } catch (e) {
    throw new FormatError(`${json}: cannot read the training state (${(e as Error).message})`);
  }
  if (state?.format !== CHECKPOINT_FORMAT) throw new FormatError(`${json}: not a ${CHECKPOINT_FORMAT} training checkpoint`);
  for (const k of ['epoch', 'batchInEpoch', 'step'] as const) {
    if (!Number.isSafeInteger(state[k]) || state[k] < 0) throw new FormatError(`${json}: '${k}' must be a non-negative integer`);
  }
  return state;
}

/**
 * Loads a checkpoint into the given model, optimizer and EMA (which must have
 * the same parameters) and returns the training state.
 */
export async function loadCheckpoint(dir: string, parts: Omit<CheckpointParts, 'state'>): Promise<TrainState> {
  const state = await readTrainState(dir);
  const all = await loadSafetensors(checkpointPaths(dir).tensors);
  try {
    const pick = (prefix: string) => {
      const m = new Map<string, Tensor>();
      for (const [k, t] of all) if (k.startsWith(prefix)) m.set(k.slice(prefix.length), t);
      return m;
    };
    parts.model.loadStateDict(pick('model.'));
    if (parts.optimizer) {
      if (!state.optimizer) throw new StateDictError(`${dir}: the checkpoint has no optimizer state`, { missing: [], unexpected: [], mismatched: [] });
      parts.optimizer.loadStateDict({ meta: state.optimizer, tensors: pick('optim.') });
    }
    if (parts.ema) {
      const ema = pick('ema.');
      if (ema.size === 0) throw new StateDictError(`${dir}: the checkpoint has no weight EMA`, { missing: [], unexpected: [], mismatched: [] });
      parts.ema.load(ema);
    }
  } finally {
    for (const t of all.values()) t.dispose();
  }
  return state;
}
