/** Entry of a DataLoader worker thread: builds the batches it is sent, one message each way. */
import { parentPort, workerData } from 'worker_threads';
import { BatchJob, buildBatch, WorkerSetup } from './batch';

const setup = workerData as WorkerSetup;
const port = parentPort!;

port.on('message', (job: BatchJob) => {
  buildBatch(setup, job).then(
    (r) => port.postMessage({ id: job.id, images: r.images, targets: r.targets }, (r.targets ? [r.images.buffer, r.targets.buffer] : [r.images.buffer]) as ArrayBuffer[]),
    (err: Error) => port.postMessage({ id: job.id, error: { name: err?.name, message: err?.message ?? String(err) } }),
  );
});
