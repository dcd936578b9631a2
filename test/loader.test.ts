// A load failure says what was tried and how to fix it.
import { requireLib, runNode } from './helpers';

describe('addon loader', () => {
  test('a missing addon gives an AddonLoadError listing what was tried and the fixes', () => {
    const r = runNode(`${requireLib}
      try { vl.zeros([1]); } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }`,
    { VLLAMA_ADDON: '/nonexistent/visionllama.node' });
    const out = JSON.parse(r.stdout);
    expect(out.name).toBe('AddonLoadError');
    expect(out.code).toBe('VL_LOAD');
    expect(out.message).toMatch(/could not load the native addon for linux-x64/);
    expect(out.message).toMatch(/VLLAMA_ADDON=\/nonexistent\/visionllama.node \(no such file\)/);
    expect(out.message).toMatch(/npm rebuild visionllama/);
  });

  test('a file that is not an addon is reported with its cause', () => {
    const r = runNode(`${requireLib}
      try { vl.zeros([1]); } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }`,
    { VLLAMA_ADDON: __filename });
    const out = JSON.parse(r.stdout);
    expect(out.name).toBe('AddonLoadError');
    expect(out.message).toMatch(/Cause: /);
  });

  test('the CLI reports the build', () => {
    const r = runNode(`require(${JSON.stringify(require.resolve('./register-ts.js'))}); process.argv = ['node', 'visionllama', 'info']; require(${JSON.stringify(require.resolve('../lib/cli/main.ts'))});`);
    expect(r.stdout).toMatch(/cpu: {2}isa (scalar|avx2|avx512)/);
    expect(r.stdout).toMatch(/cuda: /);
  });
});
