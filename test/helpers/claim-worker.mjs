// A separate OS process that claims runs in batches through the library until none are left,
// printing the run numbers it got as JSON. Used to prove claims across processes.
import { openDatabase } from '../../dist/db/connection.js';
import { claimRuns } from '../../dist/state/claim.js';
import { startSession } from '../../dist/state/sessions.js';

const [url, productionId, batch] = process.argv.slice(2);
const handle = openDatabase(url, { max: 1 });
const id = await startSession(handle.db, { user: `worker${process.pid}`, host: 'test', pid: process.pid, productionId: Number(productionId), options: {}, leaseSeconds: 60 });
const got = [];
for (;;) {
  const runs = await claimRuns(handle.db, { productionId: Number(productionId), parentId: null, session: { id, user: 'worker' }, limit: Number(batch) });
  if (runs.length === 0) break;
  got.push(...runs);
}
await handle.close();
process.stdout.write(JSON.stringify(got));
