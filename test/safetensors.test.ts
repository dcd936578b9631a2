// safetensors round trips, and clear FormatErrors for corrupt files.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vl from '../lib';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-st-'));

describe('safetensors', () => {
  test('reads the op fixtures', async () => {
    const m = await vl.io.loadSafetensors(path.join(__dirname, 'fixtures', 'ops', 'rope_attention.safetensors'));
    expect(m.get('q')!.shape).toEqual([2, 21, 2, 32]);
    expect(m.get('out')!.shape).toEqual([2, 21, 64]);
    for (const t of m.values()) t.dispose();
  });

  test('save then load keeps names, dtypes, shapes, values and metadata', async () => {
    const file = path.join(dir, 'rt.safetensors');
    const src = {
      a: vl.randn([3, 5], { seed: 1 }),
      b: vl.randn([7], { seed: 2, dtype: 'bf16' }),
      c: vl.tensor([1, -2, 3], [3], { dtype: 'i64' }),
      d: vl.zeros([0, 4]),
    };
    await vl.io.saveSafetensors(file, src, { format: 'pt' });
    const header = await vl.io.readSafetensorsHeader(file);
    expect(header.metadata).toEqual({ format: 'pt' });
    expect(header.dataStart % 8).toBe(0);
    const back = await vl.io.loadSafetensors(file);
    for (const [k, t] of Object.entries(src)) {
      const u = back.get(k)!;
      expect(u.dtype).toBe(t.dtype);
      expect(u.shape).toEqual(t.shape);
      expect(Buffer.from(await u.bytes()).equals(Buffer.from(await t.bytes()))).toBe(true);
      u.dispose();
      t.dispose();
    }
  });

  test('corrupt files give a FormatError naming the file and the problem', async () => {
    const good = path.join(dir, 'good.safetensors');
    await vl.io.saveSafetensors(good, { w: vl.ones([4, 4]) });
    const bytes = fs.readFileSync(good);
    const cases: [string, Buffer, RegExp][] = [
      ['empty', Buffer.alloc(0), /fewer than the 8-byte header length/],
      ['truncated data', bytes.subarray(0, bytes.length - 4), /ends at byte 64 but the data section has 60 bytes/],
      ['header length lies', Buffer.concat([Buffer.from([255, 255, 255, 0, 0, 0, 0, 0]), bytes.subarray(8)]), /the header claims \d+ bytes/],
      ['header not JSON', Buffer.concat([bytes.subarray(0, 8), Buffer.from('x'.repeat(bytes.readUInt32LE(0))), bytes.subarray(8 + bytes.readUInt32LE(0))]), /the header is not JSON/],
    ];
    for (const [name, data, message] of cases) {
      const file = path.join(dir, `${name.replace(/ /g, '_')}.safetensors`);
      fs.writeFileSync(file, data);
      const err = await vl.io.loadSafetensors(file).catch((e) => e);
      expect(err).toBeInstanceOf(vl.FormatError);
      expect(err.message).toContain(file);
      expect(err.message).toMatch(message);
    }
    // A header whose sizes do not add up.
    const lying = path.join(dir, 'lying.safetensors');
    const json = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [4, 4], data_offsets: [0, 60] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(lying, Buffer.concat([len, json, Buffer.alloc(64)]));
    await expect(vl.io.loadSafetensors(lying)).rejects.toThrow(/needs 64 bytes but data_offsets \[0, 60\] give 60/);
    const f64 = path.join(dir, 'f64.safetensors');
    const j2 = Buffer.from(JSON.stringify({ w: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }));
    len.writeBigUInt64LE(BigInt(j2.length));
    fs.writeFileSync(f64, Buffer.concat([len, j2, Buffer.alloc(8)]));
    await expect(vl.io.loadSafetensors(f64)).rejects.toBeInstanceOf(vl.DTypeError);
  });
});
