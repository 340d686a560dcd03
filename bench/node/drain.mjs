// Measures how fast a Node.js BullMQ Worker drains a backlog of no-op jobs (made by fill.mjs).
// The Node.js side of a same-run comparison with Leadflow's Rust port (`bullmq-official`):
// the README records that the port was chosen partly on throughput, so this gives the
// reference figure from BullMQ itself on the same machine and Redis. The processor does
// nothing, so the rate is queue overhead alone (fetch, lock, complete, trim).
//
//   node drain.mjs --redis redis://127.0.0.1:6379 --prefix P --queue bench --count N \
//                  --concurrency C [--timeout 300]
// Timed from worker start until N 'completed' events. Prints one JSON line:
//   {"jobs": N, "seconds": s, "rate": jobs_per_second, "concurrency": C}
// Exits 1 with a message on stderr if N jobs are not done within --timeout seconds.
import { Worker } from 'bullmq';
import { args, removeOnComplete } from './common.mjs';

const a = args('drain', { concurrency: 16, timeout: 300 });
const { count, concurrency, timeout, connection } = a;

let done = 0;
const start = performance.now();
const worker = new Worker(a.queue, async () => {}, {
  connection,
  prefix: a.prefix,
  concurrency,
  removeOnComplete,
  drainDelay: 1,
});

const finished = new Promise((resolve) => {
  worker.on('completed', () => {
    if (++done === count) resolve((performance.now() - start) / 1000);
  });
});
worker.on('error', (err) => console.error('drain: worker error:', err.message));
const timer = setTimeout(() => {
  console.error(`drain: timed out after ${timeout}s with ${done}/${count} jobs completed`);
  process.exit(1);
}, timeout * 1000);

const seconds = await finished;
clearTimeout(timer);
await worker.close();
console.log(JSON.stringify({ jobs: count, seconds, rate: count / seconds, concurrency }));
