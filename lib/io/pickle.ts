/**
 * A pickle interpreter (protocols 0–5, the opcodes torch.save emits) that never
 * imports or calls anything from the file. GLOBAL/STACK_GLOBAL give inert
 * references; calling one (REDUCE, NEWOBJ) runs one of our own handlers when
 * the reference is on a short allowlist (tensor rebuilding, OrderedDict,
 * torch.Size, ...) and otherwise makes an inert record of the call. A pickle
 * can name any callable (os.system included), so this is what makes loading
 * an untrusted checkpoint safe.
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint
 * beyond the safe range), float → number, str → string, bytes → Uint8Array,
 * tuple/list → array, dict → Map, set/frozenset → Set.
 */
import { FormatError } from '../errors';

/** An inert reference to `module.name`, as GLOBAL produces. Nothing is imported. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualname(): string { return `${this.module}.${this.name}`; }
  toString(): string { return this.qualname; }
}

/** The inert result of calling a callable that is not on the allowlist; BUILD sets `state`. */
export class PyRecord {
  state: unknown = undefined;
  /** What SETITEM(S) added: the items of a dict subclass (a ConfigDict, an OrderedDict subclass). */
  items?: Map<unknown, unknown>;
  /** What APPEND(S) added: the items of a list subclass. */
  list?: unknown[];
  constructor(readonly __class__: string, readonly args: unknown[], readonly kwargs?: Map<unknown, unknown>) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage. */
export class PickledTensor {
  constructor(
    readonly storage: unknown,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
    readonly requiresGrad: boolean,
  ) {}
}

export interface UnpickleOptions {
  /** Names the data in error messages (a file, or a file and an entry). */
  source?: string;
  /** Resolves persistent ids (PERSID/BINPERSID); without it they are an error. */
  persistentLoad?: (pid: unknown) => unknown;
  maxStack?: number;
  maxMemo?: number;
}

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT', 0x80: 'PROTO',
  0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS',
  0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** The name of a pickle opcode byte, for messages. */
export function opcodeName(op: number): string {
  return OPCODE_NAMES[op] ?? 'not a pickle opcode';
}

const MARK = Symbol('MARK');

function isIntLike(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

type Handler = (args: unknown[], fail: (what: string) => FormatError) => unknown;

function intList(v: unknown, what: string, fail: (what: string) => FormatError): number[] {
  if (!Array.isArray(v) || !v.every((d) => isIntLike(d) && d >= 0)) {
    throw fail(`${what} is ${describe(v)}, not a tuple of non-negative integers`);
  }
  return v as number[];
}

function rebuildTensor(args: unknown[], fail: (what: string) => FormatError): PickledTensor {
  const [storage, offset, size, stride, requiresGrad] = args;
  if (!isIntLike(offset) || offset < 0) throw fail(`a tensor's storage offset is ${describe(offset)}`);
  const s = intList(size, "a tensor's size", fail);
  const st = intList(stride, "a tensor's stride", fail);
  if (s.length !== st.length) throw fail(`a tensor has ${s.length} sizes but ${st.length} strides`);
  return new PickledTensor(storage, offset, s, st, requiresGrad === true);
}

/** The only callables ever honoured; everything else becomes a PyRecord. */
const HANDLERS: Record<string, Handler> = {
  'torch._utils._rebuild_tensor_v2': rebuildTensor,
  'torch._utils._rebuild_tensor': rebuildTensor,
  'torch._utils._rebuild_parameter': (args) => args[0],
  'torch._utils._rebuild_parameter_with_state': (args) => args[0],
  // Tensor subclasses: (func, type, args, state); honoured only when func itself is allowlisted.
  'torch._tensor._rebuild_from_type_v2': (args, fail) => call(args[0], Array.isArray(args[2]) ? args[2] : [], fail),
  'collections.OrderedDict': (args, fail) => {
    const m = new Map<unknown, unknown>();
    if (args[0] !== undefined && args[0] !== null) {
      if (!Array.isArray(args[0])) throw fail(`OrderedDict(${describe(args[0])})`);
      for (const pair of args[0]) {
        if (!Array.isArray(pair) || pair.length !== 2) throw fail('OrderedDict items must be pairs');
        m.set(pair[0], pair[1]);
      }
    }
    return m;
  },
  'torch.Size': (args, fail) => intList(args[0] ?? [], 'torch.Size', fail),
  'builtins.set': (args) => new Set(Array.isArray(args[0]) ? args[0] : []),
  'builtins.frozenset': (args) => new Set(Array.isArray(args[0]) ? args[0] : []),
  'builtins.slice': (args) => ({ start: args[0] ?? null, stop: args[1] ?? null, step: args[2] ?? null }),
  'torch.device': (args, fail) => {
    const [type, index] = args;
    if (typeof type !== 'string') throw fail(`torch.device(${describe(type)})`);
    return index === undefined || index === null || type.includes(':') ? type : `${type}:${String(index)}`;
  },
  // Protocol 0/1 object reconstruction, (class, base, base value): an inert record of the
  // named class holding the base value's items (a dict or list subclass).
  'copyreg._reconstructor': (args) => {
    const r = new PyRecord(args[0] instanceof PyGlobal ? args[0].qualname : describe(args[0]), []);
    if (args[2] instanceof Map) r.items = args[2];
    else if (Array.isArray(args[2])) r.list = [...args[2]];
    return r;
  },
};
// Protocols 0-2 spell bytes as _codecs.encode(latin-1 text, 'latin1'): pure data.
HANDLERS['_codecs.encode'] = (args) =>
  typeof args[0] === 'string' && (args[1] === 'latin1' || args[1] === 'latin-1')
    ? Uint8Array.from(Buffer.from(args[0], 'latin1'))
    : new PyRecord('_codecs.encode', args);
HANDLERS['builtins.bytearray'] = (args) =>
  args[0] instanceof Uint8Array ? Uint8Array.from(args[0])
    : args[0] === undefined ? new Uint8Array(0)
      : typeof args[0] === 'string' && (args[1] === 'latin1' || args[1] === 'latin-1') ? Uint8Array.from(Buffer.from(args[0], 'latin1'))
        : new PyRecord('builtins.bytearray', args);
// Python 3 writes builtins under their Python 2 names for protocols below 3 (and Python 2 did).
for (const name of ['set', 'frozenset', 'slice', 'bytearray']) HANDLERS[`__builtin__.${name}`] = HANDLERS[`builtins.${name}`];
HANDLERS['copy_reg._reconstructor'] = HANDLERS['copyreg._reconstructor'];

function call(callable: unknown, args: unknown[], fail: (what: string) => FormatError, kwargs?: Map<unknown, unknown>): unknown {
  if (callable instanceof PyGlobal) {
    const handler = kwargs === undefined || kwargs.size === 0 ? HANDLERS[callable.qualname] : undefined;
    if (handler) return handler(args, fail);
    return new PyRecord(callable.qualname, args, kwargs);
  }
  // Calling something that is not a plain reference (a record, say): still inert.
  const name = callable instanceof PyRecord ? `${callable.__class__}()` : typeof callable;
  return new PyRecord(name, args, kwargs);
}

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v === undefined) return 'nothing';
  if (v instanceof PyGlobal) return v.qualname;
  if (v instanceof PyRecord) return `a ${v.__class__} object`;
  if (v instanceof PickledTensor) return 'a tensor';
  if (v instanceof Map) return 'a dict';
  if (v instanceof Set) return 'a set';
  if (Array.isArray(v)) return `a sequence of ${v.length}`;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}

/** Two's-complement little-endian bytes (LONG1/LONG4) as a number, or bigint beyond the safe range. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  // Through hex: linear, where shifting byte by byte would be quadratic.
  let v = BigInt(`0x${Buffer.from(bytes).reverse().toString('hex')}`);
  if (bytes[bytes.length - 1] & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return narrow(v);
}

/** Like CPython's limit on int digits: longer integers are refused, not parsed slowly. */
const MAX_INT_BYTES = 1 << 12;

function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Python's escapes in a protocol 0 STRING (a quoted repr). */
function unescapeString(s: string, fail: (what: string) => FormatError): string {
  const q = s[0];
  if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) throw fail(`STRING argument ${describe(s)} is not quoted`);
  const body = s.slice(1, -1);
  const simple: Record<string, string> = { n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v', '\n': '' };
  let out = '';
  for (let i = 0; i < body.length; ++i) {
    const c = body[i];
    if (c !== '\\') { out += c; continue; }
    const d = body[++i];
    if (d === undefined) throw fail('STRING argument ends in a backslash');
    if (d in simple) out += simple[d];
    else if (d === 'x' && /^[0-9a-fA-F]{2}$/.test(body.slice(i + 1, i + 3))) { out += String.fromCharCode(parseInt(body.slice(i + 1, i + 3), 16)); i += 2; }
    else if (/[0-7]/.test(d)) {
      const m = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out += String.fromCharCode(parseInt(m, 8) & 0xff);
      i += m.length - 1;
    } else out += `\\${d}`;
  }
  return out;
}

/** Python's raw-unicode-escape (protocol 0 UNICODE): \uXXXX and \UXXXXXXXX, other bytes latin-1. */
function rawUnicodeEscape(bytes: Uint8Array): string {
  const s = Buffer.from(bytes).toString('latin1');
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a: string | undefined, b: string | undefined) =>
    String.fromCodePoint(parseInt((a ?? b)!, 16)));
}

function parseFloatText(s: string): number | undefined {
  const t = s.trim();
  if (/^[-+]?inf(inity)?$/i.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
  if (/^[-+]?nan$/i.test(t)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return undefined;
  return Number(t);
}

/**
 * Interprets a pickle. Runs in time linear in its length (each opcode consumes
 * at least one byte), with the stack and memo bounded.
 */
export function unpickle(data: Uint8Array, options: UnpickleOptions = {}): unknown {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const source = options.source ?? 'pickle';
  const maxStack = options.maxStack ?? 1 << 24;
  const maxMemo = options.maxMemo ?? 1 << 24;
  let pos = 0;
  let opPos = 0;
  let opName = '';
  const fail = (what: string) => new FormatError(`${source}: bad pickle: ${what} (${opName} at byte ${opPos})`);
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number): number => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > buf.length) {
      throw fail(`needs ${n} bytes at byte ${pos} but the data has ${buf.length - pos} left (truncated?)`);
    }
    const at = pos;
    pos += n;
    return at;
  };
  const bytes = (n: number): Uint8Array => {
    const at = need(n);
    return buf.subarray(at, at + n);
  };
  const line = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) throw fail('a text argument has no terminating newline');
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const u64 = (): number => {
    const at = need(8);
    const v = buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`a length of ${v} bytes`);
    return Number(v);
  };
  const push = (v: unknown): void => {
    if (stack.length >= maxStack) throw fail(`the stack exceeds ${maxStack} items`);
    stack.push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw fail('the stack is empty');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) throw fail('the stack is empty');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (prev === undefined) throw fail('no MARK to pop to');
    stack = prev;
    return items;
  };
  const memoPut = (key: number): void => {
    if (!Number.isSafeInteger(key) || key < 0) throw fail(`memo key ${key}`);
    if (!memo.has(key) && memo.size >= maxMemo) throw fail(`the memo exceeds ${maxMemo} entries`);
    memo.set(key, top());
  };
  const memoGet = (key: number): void => {
    if (!memo.has(key)) throw fail(`memo key ${key} was never stored`);
    push(memo.get(key));
  };
  const textInt = (s: string): number | bigint => {
    const t = s.trim().replace(/L$/, '');
    if (!/^[-+]?\d+$/.test(t)) throw fail(`${describe(s)} is not an integer`);
    if (t.length > MAX_INT_BYTES) throw fail(`an integer of ${t.length} digits`);
    return narrow(BigInt(t));
  };
  const list = (v: unknown, what: string): unknown[] => {
    if (v instanceof PyRecord) return (v.list ??= []);
    if (!Array.isArray(v) || Object.isFrozen(v)) throw fail(`${what} on ${describe(v)}, not a list`);
    return v;
  };
  const dict = (v: unknown, what: string): Map<unknown, unknown> => {
    if (v instanceof Map) return v;
    if (v instanceof PyRecord) return (v.items ??= new Map());
    throw fail(`${what} on ${describe(v)}, not a dict`);
  };
  const tuple = (items: unknown[]): unknown[] => Object.freeze(items) as unknown[];
  const checkKey = (k: unknown): unknown => {
    // Unhashable keys would raise in Python; here they would silently compare by identity.
    if (k instanceof Map || k instanceof Set || (Array.isArray(k) && !Object.isFrozen(k))) throw fail(`unhashable dict key ${describe(k)}`);
    return k;
  };
  const persistent = (pid: unknown): unknown => {
    if (!options.persistentLoad) throw fail('a persistent id, but no loader for them');
    return options.persistentLoad(pid);
  };

  while (true) {
    if (pos >= buf.length) {
      opPos = pos;
      opName = 'end of data';
      throw fail('the data ends without STOP');
    }
    opPos = pos;
    const op = buf[pos++];
    opName = opcodeName(op);
    switch (op) {
      case 0x80: { // PROTO
        const v = buf[need(1)];
        if (v > 5) throw fail(`protocol ${v} is newer than 5`);
        break;
      }
      case 0x95: // FRAME: framing only groups opcodes; the data is already whole.
        if (u64() > buf.length - pos) throw fail('a frame runs past the end of the data');
        break;
      case 0x2e: { // STOP
        if (marks.length) throw fail(`${marks.length} MARK(s) left open`);
        return pop();
      }
      case 0x28: // MARK
        if (marks.length >= maxStack) throw fail(`more than ${maxStack} open MARKs`);
        marks.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark(); // popping an empty stack above a mark discards the mark, as CPython does
        break;
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x70: memoPut(Number(textInt(line()))); break; // PUT
      case 0x71: memoPut(buf[need(1)]); break; // BINPUT
      case 0x72: memoPut(buf.readUInt32LE(need(4))); break; // LONG_BINPUT
      case 0x94: memoPut(memo.size); break; // MEMOIZE
      case 0x67: memoGet(Number(textInt(line()))); break; // GET
      case 0x68: memoGet(buf[need(1)]); break; // BINGET
      case 0x6a: memoGet(buf.readUInt32LE(need(4))); break; // LONG_BINGET
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x49: { // INT
        const s = line();
        if (s === '01') push(true);
        else if (s === '00') push(false);
        else push(textInt(s));
        break;
      }
      case 0x4a: push(buf.readInt32LE(need(4))); break; // BININT
      case 0x4b: push(buf[need(1)]); break; // BININT1
      case 0x4d: push(buf.readUInt16LE(need(2))); break; // BININT2
      case 0x4c: push(textInt(line())); break; // LONG
      case 0x8a: push(decodeLong(bytes(buf[need(1)]))); break; // LONG1
      case 0x8b: { // LONG4
        const n = buf.readInt32LE(need(4));
        if (n < 0 || n > MAX_INT_BYTES) throw fail(`an integer of ${n} bytes`);
        push(decodeLong(bytes(n)));
        break;
      }
      case 0x47: push(buf.readDoubleBE(need(8))); break; // BINFLOAT
      case 0x46: { // FLOAT
        const s = line();
        const v = parseFloatText(s);
        if (v === undefined) throw fail(`${describe(s)} is not a float`);
        push(v);
        break;
      }
      case 0x53: push(unescapeString(line(), fail)); break; // STRING
      case 0x54: { // BINSTRING
        const n = buf.readInt32LE(need(4));
        if (n < 0) throw fail(`negative length ${n}`);
        push(Buffer.from(bytes(n)).toString('latin1'));
        break;
      }
      case 0x55: push(Buffer.from(bytes(buf[need(1)])).toString('latin1')); break; // SHORT_BINSTRING
      case 0x56: { // UNICODE
        const end = buf.indexOf(0x0a, pos);
        if (end < 0) throw fail('a text argument has no terminating newline');
        push(rawUnicodeEscape(bytes(end - pos)));
        pos = end + 1;
        break;
      }
      case 0x58: push(Buffer.from(bytes(buf.readUInt32LE(need(4)))).toString('utf8')); break; // BINUNICODE
      case 0x8c: push(Buffer.from(bytes(buf[need(1)])).toString('utf8')); break; // SHORT_BINUNICODE
      case 0x8d: push(Buffer.from(bytes(u64())).toString('utf8')); break; // BINUNICODE8
      // Bytes are copied out so that they do not pin the whole pickle buffer.
      case 0x42: push(Uint8Array.from(bytes(buf.readUInt32LE(need(4))))); break; // BINBYTES
      case 0x43: push(Uint8Array.from(bytes(buf[need(1)]))); break; // SHORT_BINBYTES
      case 0x8e: push(Uint8Array.from(bytes(u64()))); break; // BINBYTES8
      case 0x96: push(Uint8Array.from(bytes(u64()))); break; // BYTEARRAY8
      case 0x29: push(tuple([])); break; // EMPTY_TUPLE
      case 0x74: push(tuple(popMark())); break; // TUPLE
      case 0x85: push(tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push(tuple([a, b, c])); break; } // TUPLE3
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x6c: push(popMark()); break; // LIST
      case 0x61: { const v = pop(); list(top(), 'APPEND').push(v); break; } // APPEND
      case 0x65: { // APPENDS
        const items = popMark();
        const l = list(top(), 'APPENDS');
        for (const v of items) l.push(v); // not push(...items): that overflows the call stack for long lists
        break;
      }
      case 0x7d: push(new Map()); break; // EMPTY_DICT
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) throw fail('an odd number of items');
        const m = new Map<unknown, unknown>();
        for (let i = 0; i < items.length; i += 2) m.set(checkKey(items[i]), items[i + 1]);
        push(m);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        dict(top(), 'SETITEM').set(checkKey(k), v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) throw fail('an odd number of items');
        const m = dict(top(), 'SETITEMS');
        for (let i = 0; i < items.length; i += 2) m.set(checkKey(items[i]), items[i + 1]);
        break;
      }
      case 0x8f: push(new Set()); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) throw fail(`ADDITEMS on ${describe(s)}, not a set`);
        for (const v of items) s.add(checkKey(v));
        break;
      }
      case 0x91: push(new Set(popMark().map(checkKey))); break; // FROZENSET
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        push(new PyGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail(`STACK_GLOBAL of ${describe(module)}, ${describe(name)}`);
        push(new PyGlobal(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const callable = pop();
        if (!Array.isArray(args)) throw fail(`the arguments are ${describe(args)}, not a tuple`);
        push(call(callable, args, fail));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) throw fail(`the arguments are ${describe(args)}, not a tuple`);
        push(call(cls, args, fail));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args) || !(kwargs instanceof Map)) throw fail('the arguments are not a tuple and a dict');
        push(call(cls, args, fail, kwargs));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        // Records keep their state; other objects' attributes (an OrderedDict's
        // _metadata, say) carry nothing a state dict needs.
        if (obj instanceof PyRecord) obj.state = state;
        break;
      }
      case 0x50: push(persistent(line())); break; // PERSID
      case 0x51: push(persistent(pop())); break; // BINPERSID
      default:
        throw new FormatError(`${source}: unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} ('${opName}') at byte ${opPos}`);
    }
  }
}
