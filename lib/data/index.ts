/** Training and evaluation data: datasets, transforms, mixup, and a multi-threaded loader. */
export { decodeImage, jpegDecoder, loadImageBatch, IMAGENET_MEAN, IMAGENET_STD } from './image';
export type { EvalTransform, DecodedBatch } from './image';
export { parseIdx, readIdx, readIdxSync } from './idx';
export type { IdxArray } from './idx';
export {
  loadFashionMnist, loadFashionMnistSync, FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
  FASHION_MNIST_SYSTEM_DIR, FASHION_MNIST_BUNDLED_DIR,
} from './fashion-mnist';
export type { FashionMnist, FashionMnistOptions, FashionMnistSplit } from './fashion-mnist';
export { Rng } from './rng';
export type { RngState } from './rng';
export { randomResizedCropBox, decodeTrainImage, augmentGray, normalizeGray } from './transforms';
export type { RandomResizedCropOptions, RgbTrainTransform, GrayTrainTransform, GrayNormalize, CropBox } from './transforms';
export { mixBatch } from './mixup';
export type { MixupOptions, MixedBatch } from './mixup';
export { ImageFolder, IMAGE_EXTENSIONS } from './image-folder';
export type { ImageFile, ImageFolderSpec } from './image-folder';
export type { DatasetSpec, ArraysSpec, FashionMnistSpec, TransformSpec } from './spec';
export { DataLoader } from './loader';
export type { DataLoaderOptions, Batch, EpochOptions } from './loader';
