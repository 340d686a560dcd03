// Fills a BullMQ queue with a backlog of no-op jobs for drain.mjs to measure.
// Half of the Node.js BullMQ side of a same-run comparison with Leadflow's Rust port
// (`bullmq-official`): the README records that the port was chosen partly on throughput,
// so both sides drain the same backlog on the same Redis. Job options match Leadflow's
// (shared/src/queue/mod.rs): finished jobs trimmed by age and count.
//
//   node fill.mjs --redis redis://127.0.0.1:6379 --prefix P --queue bench --count N
// Prints one JSON line: {"added": N, "seconds": s}
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { args, removeOnComplete, removeOnFail } from './common.mjs';

const a = args('fill');
const count = a.count;

const CHUNK = 1000;
const queue = new Queue(a.queue, {
  connection: a.connection,
  prefix: a.prefix,
  defaultJobOptions: { removeOnComplete, removeOnFail },
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
