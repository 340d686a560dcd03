// Fills a BullMQ queue with a backlog of no-op jobs for drain.mjs to measure.
// Half of the Node.js BullMQ side of a same-run comparison with Leadflow's Rust port
// (`bullmq-official`): the README records that the port was chosen partly on throughput,
// so both sides drain the same backlog on the same Redis. Job options match Leadflow's
// (shared/src/queue/mod.rs): finished jobs trimmed by age and count.
//
//   node fill.mjs --redis redis://127.0.0.1:6379 --prefix P --queue bench --count N
// Prints one JSON line: {"added": N, "seconds": s}
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';

const { values: a } = parseArgs({
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    prefix: { type: 'string', default: 'bull' },
    queue: { type: 'string', default: 'bench' },
    count: { type: 'string', default: '10000' },
  },
});
const count = Number(a.count);
if (!Number.isInteger(count) || count < 1) {
  console.error(`fill: --count must be a positive integer, got ${a.count}`);
  process.exit(2);
}

const CHUNK = 1000;
// BullMQ opens (and on close, closes) its own ioredis connection from these options.
const connection = { url: a.redis, maxRetriesPerRequest: null };
const queue = new Queue(a.queue, {
  connection,
  prefix: a.prefix,
  defaultJobOptions: {
    removeOnComplete: { age: 3600, count: 5000 },
    removeOnFail: { age: 604800, count: 20000 },
  },
});

const run = randomUUID();
const start = performance.now();
for (let from = 0; from < count; from += CHUNK) {
  const jobs = [];
  for (let i = from; i < Math.min(from + CHUNK, count); i++) {
    jobs.push({ name: 'noop', data: { n: i, run } });
  }
  await queue.addBulk(jobs);
}
const seconds = (performance.now() - start) / 1000;

await queue.close();
console.log(JSON.stringify({ added: count, seconds }));
