// Image folders: one sub-folder per class, PNG/JPEG/WebP files decoded with sharp, unreadable files named.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { decodeImage } from '../lib/data/decode';
import { ImageFolder } from '../lib/data/image-folder';
import { Rng } from '../lib/data/rng';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-folder-'));

async function image(rel: string, shade: number): Promise<string> {
  const file = path.join(root, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const img = sharp({ create: { width: 40, height: 30, channels: 3, background: { r: shade, g: 255 - shade, b: 100 } } });
  const ext = path.extname(file).toLowerCase();
  await (ext === '.png' ? img.png() : ext === '.webp' ? img.webp({ lossless: true }) : img.jpeg()).toFile(file);
  return file;
}

beforeAll(async () => {
  await image('dog/b.png', 10);
  await image('dog/a.JPG', 20);
  await image('cat/x.webp', 30);
  await image('cat/nested/deeper/y.jpeg', 40);
  await image('bird/z.png', 50);
  fs.writeFileSync(path.join(root, 'cat', 'notes.txt'), 'not an image');
  fs.writeFileSync(path.join(root, 'README'), 'a file next to the class folders');
  fs.writeFileSync(path.join(root, 'dog', 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
});

describe('ImageFolder', () => {
  test('classes are the sub-folders sorted; images at any depth, by extension, in sorted order', () => {
    const ds = new ImageFolder(root);
    expect(ds.classes).toEqual(['bird', 'cat', 'dog']);
    expect(ds.samples.map((s) => [path.relative(root, s.path), s.label])).toEqual([
      ['bird/z.png', 0],
      ['cat/nested/deeper/y.jpeg', 1],
      ['cat/x.webp', 1],
      ['dog/a.JPG', 2],
      ['dog/b.png', 2],
      ['dog/broken.jpg', 2],
    ]);
    expect(ds.length).toBe(6);
    expect(ds.describe()).toEqual({ kind: 'image-folder', root, files: ds.samples, classes: ds.classes });
  });

  test('decodes PNG, JPEG and WebP with the eval and training transforms', async () => {
    const ds = new ImageFolder(root);
    for (let i = 0; i < 5; ++i) {
      const ev = await ds.getEval(i, { resize: 0, crop: 24 });
      expect(ev.label).toBe(ds.samples[i].label);
      expect(ev.image).toEqual((await decodeImage(ds.samples[i].path, { resize: 0, crop: 24 })).data);
      const tr = await ds.getTrain(i, { size: 16 }, new Rng(0, i));
      expect(tr.image.length).toBe(3 * 16 * 16);
      // A flat colour stays flat whatever the crop: red = shade.
      const red = tr.image[100] * 0.229 + 0.485;
      expect(red * 255).toBeCloseTo([50, 40, 30, 20, 10][i], -1);
    }
  });

  test('an unreadable image is an error naming the file', async () => {
    const ds = new ImageFolder(root);
    const broken = ds.samples[5].path;
    for (const load of [() => ds.getEval(5), () => ds.getTrain(5, { size: 8 }, new Rng(1))]) {
      const err = await load().catch((e) => e);
      expect(err).toBeInstanceOf(vl.FormatError);
      expect(err.message).toContain(broken);
    }
    await expect(ds.getEval(6)).rejects.toThrow(/index 6 is out of range for 6 images/);
  });

  test('bad roots: not a directory, no class folders, an empty class', () => {
    expect(() => new ImageFolder(path.join(root, 'README'))).toThrow(/is not a directory/);
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-bare-'));
    expect(() => new ImageFolder(bare)).toThrow(/has no class sub-folders/);
    fs.mkdirSync(path.join(bare, 'empty'));
    expect(() => new ImageFolder(bare)).toThrow(/no \.jpg\/\.jpeg\/\.png\/\.webp images in the class folder\(s\) empty/);
  });
});
