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
import { parseArgs } from 'node:util';
import { Worker } from 'bullmq';

const { values: a } = parseArgs({
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    prefix: { type: 'string', default: 'bull' },
    queue: { type: 'string', default: 'bench' },
    count: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    timeout: { type: 'string', default: '300' },
  },
});
const count = Number(a.count);
const concurrency = Number(a.concurrency);
const timeout = Number(a.timeout);
for (const [k, v] of [['count', count], ['concurrency', concurrency], ['timeout', timeout]]) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`drain: --${k} must be a positive integer, got ${a[k]}`);
    process.exit(2);
  }
}

// Workers block on Redis, so BullMQ requires maxRetriesPerRequest: null. BullMQ opens
// (and on close, closes) its own ioredis connections from these options.
const connection = { url: a.redis, maxRetriesPerRequest: null };

let done = 0;
const start = performance.now();
const worker = new Worker(a.queue, async () => {}, {
  connection,
  prefix: a.prefix,
  concurrency,
  removeOnComplete: { age: 3600, count: 5000 },
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
