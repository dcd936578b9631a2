/** A small command-line parser: `--name value`, `--name=value`, boolean `--flag`, positionals. */
import { ArgumentError } from '../errors';
import { checkDevice } from '../runtime';
import { WEIGHT_DTYPES, WeightDType } from '../nn/layers';

export interface FlagSpec {
  /** Flags that take a value. */
  values?: readonly string[];
  /** Flags that stand alone. */
  switches?: readonly string[];
}

export interface ParsedFlags {
  /** The last value of each flag. */
  values: Map<string, string>;
  /** Every value flag in command-line order (for flags that repeat, or group). */
  ordered: [string, string][];
  switches: Set<string>;
  positionals: string[];
}

export function parseFlags(command: string, argv: readonly string[], spec: FlagSpec): ParsedFlags {
  const values = new Map<string, string>();
  const ordered: [string, string][] = [];
  const switches = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (!a.startsWith('--') || a === '--') {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (spec.values?.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new ArgumentError(`${command}: --${name} needs a value`);
      values.set(name, v);
      ordered.push([name, v]);
    } else if (spec.switches?.includes(name) && eq < 0) {
      switches.add(name);
    } else {
      const known = [...(spec.values ?? []), ...(spec.switches ?? [])].map((f) => `--${f}`).join(', ');
      throw new ArgumentError(`${command}: unknown option ${a}; expected ${known}`);
    }
  }
  return { values, ordered, switches, positionals };
}

export function intFlag(command: string, flags: ParsedFlags, name: string, fallback: number, min = 0): number {
  const raw = flags.values.get(name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new ArgumentError(`${command}: --${name} must be an integer >= ${min}, got '${raw}'`);
  return v;
}

/** A --dtype value: the weight dtype of a model. */
export function parseDType(command: string, value: string): WeightDType {
  if (!(WEIGHT_DTYPES as readonly string[]).includes(value)) {
    throw new ArgumentError(`${command}: --dtype must be ${WEIGHT_DTYPES.join(', ')}, got '${value}'`);
  }
  return value as WeightDType;
}

/** A --device value, checked to exist and be usable on this machine (DeviceError otherwise). */
export function parseDevice(command: string, value: string): string {
  if (!/^(cpu|cuda)(:\d+)?$/.test(value)) throw new ArgumentError(`${command}: --device must be cpu, cuda or cuda:N, got '${value}'`);
  return checkDevice(value);
}
