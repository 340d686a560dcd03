// What fill.mjs and drain.mjs share: where the queue is, how many jobs, and the job
// retention Leadflow uses (shared/src/queue/mod.rs), so both sides trim alike.
import { parseArgs } from 'node:util';

export const removeOnComplete = { age: 3600, count: 5000 };
export const removeOnFail = { age: 604800, count: 20000 };

// Parses --redis, --prefix, --queue, --count plus `extra` integer options
// ({name: default}); every number must be a positive integer, else exit 2.
export function args(script, extra = {}) {
  const options = {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    prefix: { type: 'string', default: 'bull' },
    queue: { type: 'string', default: 'bench' },
    count: { type: 'string', default: '10000' },
  };
  for (const [name, def] of Object.entries(extra)) options[name] = { type: 'string', default: String(def) };
  const { values } = parseArgs({ options });
  const out = { ...values };
  for (const name of ['count', ...Object.keys(extra)]) {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 1) {
      console.error(`${script}: --${name} must be a positive integer, got ${values[name]}`);
      process.exit(2);
    }
    out[name] = n;
  }
  // BullMQ opens (and on close, closes) its own ioredis connections from these options;
  // workers block on Redis, so maxRetriesPerRequest must be null.
  out.connection = { url: values.redis, maxRetriesPerRequest: null };
  return out;
}
