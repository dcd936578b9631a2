// The addon works without CUDA and says why CUDA is unavailable; device
// rules (explicit transfers, mismatch errors) hold across devices. Several
// CPU devices (VLLAMA_CPU_DEVICES) exercise the multi-device paths anywhere.
import * as vl from '../lib';
import { requireLib, runNode } from './helpers';

const info = vl.backendInfo();

describe('backends', () => {
  test('the CPU backend is always there with its kernels', () => {
    expect(vl.backends()).toContain('cpu');
    expect(info.cpu.available).toBe(true);
    expect(info.cpu.kernels).toEqual(expect.arrayContaining(['add', 'arange', 'copy', 'fill', 'random', 'sum']));
    // One name per usable device (benchmarks report the GPU's product name).
    expect(info.cpu.devices).toEqual(['cpu']);
    expect(info.cuda.devices.length).toBe(info.cuda.deviceCount);
  });

  (info.cuda.available ? test.skip : test)('without a usable GPU, CUDA is reported unavailable with a reason and using it is a DeviceError', () => {
    expect(vl.backends()).not.toContain('cuda');
    expect(info.cuda.deviceCount).toBe(0);
    expect(info.cuda.reason.length).toBeGreaterThan(5);
    let caught: unknown;
    try {
      vl.zeros([2], { device: 'cuda' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(vl.DeviceError);
    expect((caught as Error).message).toMatch(/device cuda:0 is not available: /);
    using t = vl.ones([2]);
    expect(() => t.to('cuda')).toThrow(vl.DeviceError);
    expect(vl.memory()['cuda:0']).toBeUndefined();
  });
});

// The same checks on every backend this machine has.
describe.each(vl.backends())('on %s', (backend) => {
  const device = backend === 'cpu' ? 'cpu' : `${backend}:0`;
  test('create, convert, compute and read back', async () => {
    using a = vl.arange(0, 12, 1, { device }).reshape(3, 4);
    expect(a.device).toBe(device);
    using b = a.transpose().contiguous().to('bf16').to('f32');
    using c = b.add(vl.ones([4, 1], { device })).sum(1);
    expect(Array.from(await c.data())).toEqual([15, 18, 21, 24]);
    using r = vl.randn([1000], { seed: 4, device });
    using rc = vl.randn([1000], { seed: 4 });
    expect(Buffer.from(await r.bytes()).equals(Buffer.from(await rc.bytes()))).toBe(true);
  });
});

describe('several devices', () => {
  test('setDefaultDevice() moves the factories and rejects devices that are not there', () => {
    const r = runNode(`${requireLib}
      vl.setDefaultDevice('cpu:1');
      const out = [vl.zeros([2]).device, vl.randn([2]).device, vl.tensor([1]).device, vl.defaultDevice()];
      try { vl.setDefaultDevice('cpu:7'); } catch (e) { out.push(e.name, e.message); }
      try { vl.setDefaultDevice('cuda:0'); } catch (e) { out.push(e.name); }
      out.push(vl.defaultDevice());
      console.log(JSON.stringify(out));`, { VLLAMA_CPU_DEVICES: '2' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.slice(0, 4)).toEqual(['cpu:1', 'cpu:1', 'cpu:1', 'cpu:1']);
    expect(out[4]).toBe('DeviceError');
    expect(out[5]).toMatch(/device cpu:7 does not exist: 2 cpu device\(s\) present/);
    expect(out[6]).toBe('DeviceError');
    expect(out[7]).toBe('cpu:1');
  });

  test('transfers are explicit, mixing devices is a DeviceError, each device has its own counters', () => {
    const r = runNode(`${requireLib}
      (async () => {
        const out = {};
        const a = vl.arange(6, undefined, undefined, { device: 'cpu' });
        const moved = a.to('cpu:1');
        const b = moved.mul(2);
        out.device = b.device;
        out.values = Array.from(await b.data());
        try { a.add(b); } catch (e) { out.error = [e.constructor.name, e.message]; }
        const back = b.to({ device: 'cpu', dtype: 'bf16' });
        out.back = [back.device, back.dtype, Array.from(await back.data())];
        const m = vl.memory();
        out.devices = Object.keys(m);
        out.tensors = [m.cpu.tensors, m['cpu:1'].tensors];
        for (const t of [a, moved, b, back]) t.dispose();
        const after = vl.memory();
        out.after = [after.cpu.tensors, after['cpu:1'].tensors, after['cpu:1'].bytes];
        console.log(JSON.stringify(out));
      })();`, { VLLAMA_CPU_DEVICES: '2' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.device).toBe('cpu:1');
    expect(out.values).toEqual([0, 2, 4, 6, 8, 10]);
    expect(out.error[0]).toBe('DeviceError');
    expect(out.error[1]).toMatch(/add: tensors are on different devices \(f32\[6\] on cpu and f32\[6\] on cpu:1\)/);
    expect(out.back).toEqual(['cpu', 'bf16', [0, 2, 4, 6, 8, 10]]);
    expect(out.devices).toEqual(['cpu', 'cpu:1']);
    expect(out.tensors).toEqual([2, 2]); // cpu: a, back; cpu:1: moved, b
    expect(out.after).toEqual([0, 0, 0]);
  });
});
