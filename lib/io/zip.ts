/**
 * A zip reader over an open file: the end-of-central-directory record (and its
 * ZIP64 forms), the central directory, and each entry's local header, all read
 * with ranged reads, so a multi-GB archive is never held in memory. Entries are
 * stored (what torch.save writes) or deflated. Every size the archive claims is
 * checked against the file before it is used; a bad archive is a FormatError
 * naming the file and the problem.
 */
import * as fs from 'fs';
import * as zlib from 'zlib';
import { FormatError } from '../errors';

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const MAX_COMMENT = 0xffff;
/** The largest entry read whole into a Buffer; bigger stored entries are read by range. */
const MAX_BUFFER_ENTRY = 2 ** 31 - 1;
const READ_CHUNK = 2 ** 30;

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  flags: number;
  /** Where the local header starts. */
  localHeaderOffset: number;
}

/** A byte range of the archive file. */
export interface ZipRange {
  offset: number;
  size: number;
}

/** Reads a little-endian 64-bit size, refusing values beyond Number's exact range. */
function u64(buf: Buffer, at: number, fail: (what: string) => FormatError, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`${what} is ${v}, beyond any real file`);
  return Number(v);
}

export class ZipReader {
  readonly path: string;
  readonly fileSize: number;
  /** In central-directory order. */
  readonly entries: readonly ZipEntry[];
  /** Where the central directory starts: entry data lies before it. */
  readonly dataEnd: number;
  #byName: Map<string, ZipEntry>;
  #fh: fs.promises.FileHandle | null;
  /** Data ranges already located (the local header is read once per entry). */
  #ranges = new Map<ZipEntry, ZipRange>();

  private constructor(path: string, fh: fs.promises.FileHandle, fileSize: number, dir: Directory) {
    this.path = path;
    this.#fh = fh;
    this.fileSize = fileSize;
    this.entries = dir.entries;
    this.dataEnd = dir.cdOffset;
    const entries = dir.entries;
    this.#byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** Opens an archive and reads its directory; close() it when done. */
  static async open(path: string): Promise<ZipReader> {
    const fh = await fs.promises.open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      return new ZipReader(path, fh, size, await readDirectory(path, fh, size));
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = null;
    if (fh) await fh.close();
  }

  get(name: string): ZipEntry | undefined {
    return this.#byName.get(name);
  }

  fail(what: string): FormatError {
    return new FormatError(`${this.path}: not a valid zip archive: ${what}`);
  }

  #handle(): fs.promises.FileHandle {
    if (!this.#fh) throw new FormatError(`${this.path}: the zip archive was closed`);
    return this.#fh;
  }

  /** Reads exactly `length` bytes at `position` into `into` (or a new Buffer). */
  async readAt(position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const buf = into ?? Buffer.alloc(length);
    let done = 0;
    // Bounded: every pass reads at least one byte or stops.
    while (done < length) {
      // In chunks: one read() is limited to 2 GiB.
      const chunk = Math.min(length - done, READ_CHUNK);
      const { bytesRead } = await this.#handle().read(buf, done, chunk, position + done);
      if (bytesRead === 0) throw this.fail(`the file ends at byte ${this.fileSize}, inside a read of ${length} bytes at ${position} (truncated file?)`);
      done += bytesRead;
    }
    return buf;
  }

  /**
   * Where an entry's data lies in the file (from its local header, whose name
   * and extra lengths may differ from the central directory's).
   */
  async dataRange(entry: ZipEntry): Promise<ZipRange> {
    const known = this.#ranges.get(entry);
    if (known) return known;
    const where = `entry '${entry.name}'`;
    if (entry.localHeaderOffset + LOCAL_SIZE > this.fileSize) {
      throw this.fail(`${where}: its local header at byte ${entry.localHeaderOffset} lies past the end of the file (${this.fileSize} bytes)`);
    }
    const h = Buffer.from(await this.readAt(entry.localHeaderOffset, LOCAL_SIZE));
    if (h.readUInt32LE(0) !== SIG_LOCAL) {
      throw this.fail(`${where}: no local header signature at byte ${entry.localHeaderOffset}`);
    }
    const method = h.readUInt16LE(8);
    if (method !== entry.method) {
      throw this.fail(`${where}: the local header says compression method ${method}, the central directory ${entry.method}`);
    }
    const offset = entry.localHeaderOffset + LOCAL_SIZE + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (offset + entry.compressedSize > this.dataEnd) {
      throw this.fail(`${where}: its ${entry.compressedSize} bytes at byte ${offset} run past the start of the central directory at byte ${this.dataEnd} (bad sizes)`);
    }
    const range = { offset, size: entry.compressedSize };
    this.#ranges.set(entry, range);
    return range;
  }

  /** The byte range of a stored (uncompressed) entry, for ranged reads of its data. */
  async storedRange(entry: ZipEntry): Promise<ZipRange> {
    if (entry.method !== 0) throw this.fail(`entry '${entry.name}' is compressed, so it has no byte range to read directly`);
    return this.dataRange(entry);
  }

  /** An entry's contents (inflated when deflated), its CRC-32 checked. */
  async read(entry: ZipEntry): Promise<Buffer> {
    const where = `entry '${entry.name}'`;
    if (entry.size > MAX_BUFFER_ENTRY || entry.compressedSize > MAX_BUFFER_ENTRY) {
      throw this.fail(`${where} has ${entry.size} bytes, too many to read at once`);
    }
    const range = await this.dataRange(entry);
    const raw = Buffer.from(await this.readAt(range.offset, range.size));
    let data: Buffer;
    if (entry.method === 0) {
      data = raw;
    } else {
      try {
        // maxOutputLength stops an entry that inflates past its declared size.
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (err) {
        throw this.fail(`${where} does not inflate (${(err as Error).message})`);
      }
      if (data.length !== entry.size) {
        throw this.fail(`${where} inflates to ${data.length} bytes, not the ${entry.size} the directory declares`);
      }
    }
    const crc = crc32(data);
    if (crc !== entry.crc32) {
      throw this.fail(`${where} has CRC-32 ${hex(crc)} but the directory declares ${hex(entry.crc32)} (corrupt data)`);
    }
    return data;
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

let crcTable: Uint32Array | undefined;

export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; ++n) {
      let c = n;
      for (let k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; ++i) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface Directory {
  entries: ZipEntry[];
  cdOffset: number;
}

async function readDirectory(path: string, fh: fs.promises.FileHandle, size: number): Promise<Directory> {
  const fail = (what: string) => new FormatError(`${path}: not a valid zip archive: ${what}`);
  const readAt = async (position: number, length: number): Promise<Buffer> => {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) throw fail(`the file ends inside a read of ${length} bytes at ${position} (truncated file?)`);
      done += bytesRead;
    }
    return buf;
  };
  if (size < EOCD_SIZE) throw fail(`the file has ${size} bytes, fewer than an end-of-central-directory record`);

  // The end record sits at the end, followed only by a comment of at most 64 KiB.
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
  const tailStart = size - tailLen;
  const tail = await readAt(tailStart, tailLen);
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; --i) {
    if (tail.readUInt32LE(i) === SIG_EOCD && i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw fail('no end-of-central-directory record (wrong magic, or a truncated file)');
  }
  const eocdPos = tailStart + eocd;
  const disk = tail.readUInt16LE(eocd + 4);
  const cdDisk = tail.readUInt16LE(eocd + 6);
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  let dirEnd = eocdPos;

  // ZIP64: a locator right before the end record points at the 64-bit end record.
  const locPos = eocdPos - ZIP64_LOCATOR_SIZE;
  const hasLocator = locPos >= 0 && (await readAt(locPos, 4)).readUInt32LE(0) === SIG_ZIP64_LOCATOR;
  const saturated = count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff;
  if (hasLocator) {
    const loc = await readAt(locPos, ZIP64_LOCATOR_SIZE);
    const recPos = u64(loc, 8, fail, 'the ZIP64 end record offset');
    if (recPos + ZIP64_EOCD_SIZE > locPos) {
      throw fail(`the ZIP64 end record at byte ${recPos} does not fit before its locator at byte ${locPos}`);
    }
    const rec = await readAt(recPos, ZIP64_EOCD_SIZE);
    if (rec.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw fail(`no ZIP64 end record signature at byte ${recPos}`);
    if (rec.readUInt32LE(16) !== 0 || rec.readUInt32LE(20) !== 0) throw fail('multi-disk archives are not supported');
    const count64 = u64(rec, 32, fail, 'the ZIP64 entry count');
    const cdSize64 = u64(rec, 40, fail, 'the ZIP64 central directory size');
    const cdOffset64 = u64(rec, 48, fail, 'the ZIP64 central directory offset');
    // Fields not saturated in the classic record must agree with the ZIP64 ones.
    const disagree = (what: string, a: number, b: number, saturated: number) => {
      if (a !== saturated && a !== b) throw fail(`the end record says ${a} for the ${what}, its ZIP64 record ${b}`);
    };
    disagree('entry count', count, count64, 0xffff);
    disagree('central directory size', cdSize, cdSize64, 0xffffffff);
    disagree('central directory offset', cdOffset, cdOffset64, 0xffffffff);
    [count, cdSize, cdOffset] = [count64, cdSize64, cdOffset64];
    dirEnd = recPos;
  } else if (saturated) {
    throw fail('the end record has saturated (ZIP64) fields but no ZIP64 locator');
  } else if (disk !== 0 || cdDisk !== 0) {
    throw fail('multi-disk archives are not supported');
  }

  if (cdOffset + cdSize > dirEnd) {
    throw fail(`the central directory (${cdSize} bytes at byte ${cdOffset}) runs past the end record at byte ${dirEnd} (truncated file?)`);
  }
  if (count * CENTRAL_SIZE > cdSize) {
    throw fail(`${count} entries cannot fit in a central directory of ${cdSize} bytes`);
  }
  // Names, extras and comments are at most 3 × 64 KiB per entry.
  if (cdSize > count * (CENTRAL_SIZE + 3 * 0xffff)) {
    throw fail(`a central directory of ${cdSize} bytes is too large for ${count} entries`);
  }
  const cd = await readAt(cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  const seen = new Set<string>();
  let p = 0;
  for (let i = 0; i < count; ++i) {
    if (p + CENTRAL_SIZE > cdSize) throw fail(`the central directory ends inside entry ${i}`);
    if (cd.readUInt32LE(p) !== SIG_CENTRAL) throw fail(`no central directory signature for entry ${i} at byte ${cdOffset + p}`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let uncompressedSize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    const diskStart = cd.readUInt16LE(p + 34);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const next = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
    if (next > cdSize) throw fail(`central directory entry ${i} runs past the end of the directory`);
    const name = cd.toString('utf8', p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen);
    const where = `entry '${name}'`;

    // ZIP64 extra field: 64-bit values for exactly the fields saturated above, in this order.
    const extra = cd.subarray(p + CENTRAL_SIZE + nameLen, p + CENTRAL_SIZE + nameLen + extraLen);
    for (let q = 0; q + 4 <= extra.length;) {
      const id = extra.readUInt16LE(q);
      const len = extra.readUInt16LE(q + 2);
      if (q + 4 + len > extra.length) throw fail(`${where}: an extra field runs past the extra data`);
      if (id === 0x0001) {
        let r = q + 4;
        const take = (what: string): number => {
          if (r + 8 > q + 4 + len) throw fail(`${where}: the ZIP64 extra field is too short for the ${what}`);
          const v = u64(extra, r, fail, `${where}'s ${what}`);
          r += 8;
          return v;
        };
        if (uncompressedSize === 0xffffffff) uncompressedSize = take('size');
        if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('local header offset');
      }
      q += 4 + len;
    }
    if (compressedSize === 0xffffffff || uncompressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
      // Saturated without a ZIP64 value: the real one is unknown.
      throw fail(`${where} has saturated (ZIP64) sizes but no ZIP64 extra field holding them`);
    }
    if (diskStart !== 0 && diskStart !== 0xffff) throw fail(`${where} starts on disk ${diskStart}; multi-disk archives are not supported`);
    if (flags & 1) throw fail(`${where} is encrypted`);
    if (method !== 0 && method !== 8) throw fail(`${where} uses compression method ${method}; only stored (0) and deflate (8) are supported`);
    if (method === 0 && compressedSize !== uncompressedSize) {
      throw fail(`${where} is stored but claims ${compressedSize} bytes in the file and ${uncompressedSize} uncompressed`);
    }
    if (localHeaderOffset + LOCAL_SIZE + nameLen > cdOffset) {
      // Data always precedes the central directory.
      throw fail(`${where}: its local header at byte ${localHeaderOffset} does not lie before the central directory at byte ${cdOffset}`);
    }
    if (localHeaderOffset + LOCAL_SIZE + compressedSize > cdOffset) {
      throw fail(`${where}: its ${compressedSize} bytes at byte ${localHeaderOffset} run past the start of the central directory at byte ${cdOffset} (bad sizes)`);
    }
    if (seen.has(name)) throw fail(`${where} appears twice`);
    seen.add(name);
    entries.push({ name, method, compressedSize, size: uncompressedSize, crc32: crc, flags, localHeaderOffset });
    p = next;
  }
  return { entries, cdOffset };
}
