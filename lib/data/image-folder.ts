/**
 * A directory of images with one sub-folder per class (torchvision's
 * ImageFolder layout): classes are the sub-folder names sorted, labels their
 * positions; images are found at any depth below a class folder.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ArgumentError } from '../errors';
import { decodeImage, EvalTransform } from './decode';
import { Rng } from './rng';
import { decodeTrainImage, RgbTrainTransform } from './transforms';

export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

export interface ImageFile {
  path: string;
  label: number;
}

/** How a loader worker finds an image folder's samples (no closures: it crosses threads). */
export interface ImageFolderSpec {
  kind: 'image-folder';
  root: string;
  files: ImageFile[];
  classes?: string[];
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory(); // follows links, as torchvision does
  } catch {
    return false;
  }
}

function listImages(dir: string, extensions: readonly string[], out: string[]): void {
  for (const entry of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, entry);
    if (isDirectory(p)) listImages(p, extensions, out);
    else if (extensions.includes(path.extname(entry).toLowerCase())) out.push(p);
  }
}

export class ImageFolder {
  readonly root: string;
  readonly classes: string[];
  readonly samples: ImageFile[];

  constructor(root: string, options: { extensions?: readonly string[] } = {}) {
    const extensions = (options.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase());
    if (!isDirectory(root)) throw new ArgumentError(`ImageFolder: ${root} is not a directory`);
    this.root = root;
    this.classes = fs.readdirSync(root).filter((d) => isDirectory(path.join(root, d))).sort();
    if (!this.classes.length) throw new ArgumentError(`ImageFolder: ${root} has no class sub-folders`);
    this.samples = [];
    const empty: string[] = [];
    this.classes.forEach((name, label) => {
      const files: string[] = [];
      listImages(path.join(root, name), extensions, files);
      if (!files.length) empty.push(name);
      for (const p of files) this.samples.push({ path: p, label });
    });
    if (empty.length) throw new ArgumentError(`ImageFolder: no ${extensions.join('/')} images in the class folder(s) ${empty.join(', ')} of ${root}`);
  }

  get length(): number {
    return this.samples.length;
  }

  /** The descriptor a DataLoader takes. */
  describe(): ImageFolderSpec {
    return { kind: 'image-folder', root: this.root, files: this.samples, classes: this.classes };
  }

  /** Sample `index` with the training transform: [3, size, size] floats. */
  async getTrain(index: number, transform: RgbTrainTransform, rng: Rng): Promise<{ image: Float32Array; label: number }> {
    const s = this.sample(index);
    return { image: await decodeTrainImage(s.path, transform, rng), label: s.label };
  }

  /** Sample `index` with the evaluation transform (resize, center crop): [3, crop, crop] floats. */
  async getEval(index: number, transform: EvalTransform = {}): Promise<{ image: Float32Array; label: number }> {
    const s = this.sample(index);
    return { image: (await decodeImage(s.path, transform)).data, label: s.label };
  }

  private sample(index: number): ImageFile {
    if (!Number.isInteger(index) || index < 0 || index >= this.samples.length) {
      throw new ArgumentError(`ImageFolder: index ${index} is out of range for ${this.samples.length} images`);
    }
    return this.samples[index];
  }
}
