import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../src/db/connection.js';
import { claimRuns } from '../../src/state/claim.js';
import { startSession } from '../../src/state/sessions.js';
import { adoptRuns, recordEvent, returnRunsToPool, transitionRuns, type RunUpdate } from '../../src/state/transition.js';
import type { RunStatus } from '../../src/core/statuses.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { seedProduction } from '../helpers/seed.js';

/**
 * Events written from sql/010 on: transitionRuns, adoptRuns and recordEvent fill events.reason and
 * the columns the views count by, as a shifter's login (whose grants are column by column), and
 * the views answer from them. The moves are made as src/session/ makes them today, without naming a
 * reason: each gets the reason its move implies (reasonForMove).
 */

const role = `rp_events_${randomBytes(3).toString('hex')}`;
const password = `pw-${randomBytes(6).toString('hex')}`;
let database: TestDatabase;
let shifter: DatabaseHandle;

beforeAll(async () => {
  database = await createTestDatabase();
  await database.handle.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' IN ROLE run_production_shifter`);
  const url = new URL(database.url);
  url.username = role;
  url.password = password;
  shifter = openDatabase(url.toString(), { applicationName: 'event-columns-test' });
});

afterAll(async () => {
  await shifter?.close();
  await database?.drop();
  const admin = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await admin.connect();
  await admin.query(`DROP ROLE IF EXISTS ${role}`).finally(() => admin.end());
});

interface EventColumns {
  run_number: number | null;
  reason: string;
  attempt: number | null;
  job_id: string | null;
  exit_code: number | null;
  host: string | null;
  error: string | null;
}

const event = (run: number, reason: string, more: Partial<EventColumns> = {}): EventColumns => ({
  run_number: run,
  reason,
  attempt: 1,
  job_id: null,
  exit_code: null,
  host: null,
  error: null,
  ...more,
});

describe('events written by the code from 010 on', () => {
  it('a session that names no reason gets the one its move implies, with the attempt, job, exit code, host and error line', async () => {
    const { productionId } = await seedProduction(database.handle.db, { runs: 12, firstRun: 900, type: 'fresh' });
    const sessionId = await startSession(shifter.db, { user: 'dora', host: 'hq', pid: 1, productionId, options: {}, leaseSeconds: 60 });
    const actor = { user: 'dora', sessionId };
    expect(await claimRuns(shifter.db, { productionId, parentId: null, session: { id: sessionId, user: 'dora' }, limit: 12 })).toHaveLength(12);
    const move = (runs: (number | RunUpdate)[], from: RunStatus, to: RunStatus, extra: { countAttempt?: boolean; message?: string; reason?: 'input_missing' } = {}) =>
      transitionRuns(shifter.db, { productionId, runs, from, to, owner: sessionId, actor, ...extra });
    const staged = (run: number) => ({ run, stagedPath: `/stage/${run}`, stagedBytes: 10 });

    await move([staged(900), staged(903), staged(904), staged(905)], 'claimed', 'downloading', { message: 'download started' });
    await move([staged(900)], 'downloading', 'staged');
    await move([staged(901), staged(906), staged(907), staged(908)], 'claimed', 'staged');
    const job = (run: number) => ({ run, jobId: `local:hq:${run}`, jobToken: `token-${run}` });
    await move([job(900), job(901), job(906), job(907)], 'staged', 'submitted');
    await move([900], 'submitted', 'running', { message: 'job started' });
    await move([{ run: 900, exitCode: 7, lastError: 'exit code 7: boom\nsecond line of stderr', host: 'node3' }], 'running', 'new', {
      countAttempt: true,
      message: 'attempt 1/3 failed on node3: exit code 7: boom',
    });
    await move([{ run: 901, exitCode: 0, outputs: { tree: '/out/901' }, outputBytes: 5 }], 'submitted', 'finished', { countAttempt: true });
    await move([{ run: 902, lastError: 'parent run has no recorded tree output' }], 'claimed', 'new');
    await move([{ run: 903, lastError: 'input missing: /raw/903' }], 'downloading', 'new', { countAttempt: true });
    await move([{ run: 904, lastError: 'input missing: /raw/904' }], 'downloading', 'new', { countAttempt: true, reason: 'input_missing' });
    await move([{ run: 905, lastError: 'archive refused the credentials: denied' }], 'downloading', 'new');
    // One statement, two reasons: a revoked job (its error recorded) and a plain return.
    await move([{ run: 906, lastError: 'job local:hq:906 was revoked' }, 907], 'submitted', 'new');
    await move([{ run: 908, lastError: 'the job could not be prepared: EACCES' }], 'staged', 'new', { countAttempt: true });
    await returnRunsToPool(shifter.db, { productionId, runs: [{ run: 909, status: 'claimed' }], owner: sessionId, actor, message: 'aborted (SIGINT)' });
    await returnRunsToPool(shifter.db, { productionId, runs: [{ run: 910, status: 'claimed' }], owner: sessionId, actor, message: 'returned: reaped', reason: 'reaped' });

    const written = await sql<EventColumns & { login: string }>`
      SELECT run_number, reason, attempt, job_id, exit_code, host, error, login FROM events
       WHERE production_id = ${productionId} AND kind = 'transition' AND reason <> 'claimed' ORDER BY id`.execute(database.handle.db);
    expect(written.rows.every((r) => r.login === role)).toBe(true);
    const onGrid = (run: number) => ({ job_id: `local:hq:${run}` });
    expect(written.rows.map(({ login: _login, ...r }) => r)).toEqual([
      ...[900, 903, 904, 905].map((run) => event(run, 'download_started')),
      event(900, 'staged'),
      ...[901, 906, 907, 908].map((run) => event(run, 'staged')),
      ...[900, 901, 906, 907].map((run) => event(run, 'submitted', onGrid(run))),
      event(900, 'started', onGrid(900)),
      event(900, 'retry', { ...onGrid(900), exit_code: 7, host: 'node3', error: 'exit code 7: boom' }),
      event(901, 'finished', { ...onGrid(901), exit_code: 0 }),
      event(902, 'parent_missing', { error: 'parent run has no recorded tree output' }),
      event(903, 'download_failed', { error: 'input missing: /raw/903' }),
      event(904, 'input_missing', { error: 'input missing: /raw/904' }),
      event(905, 'archive_refused', { error: 'archive refused the credentials: denied' }),
      event(906, 'revoked', { ...onGrid(906), error: 'job local:hq:906 was revoked' }),
      event(907, 'rolled_back', onGrid(907)),
      event(908, 'prepare_failed', { error: 'the job could not be prepared: EACCES' }),
      event(909, 'rolled_back'),
      event(910, 'reaped'),
    ]);

    // The views count from those columns.
    const outcomes = await sql<Record<string, unknown>>`
      SELECT run_number, outcome, attempt, exit_code, host, job_id, error FROM attempt_outcomes WHERE production_id = ${productionId} ORDER BY event_id`.execute(database.handle.db);
    expect(outcomes.rows).toEqual([
      { run_number: 900, outcome: 'failed', attempt: 1, exit_code: 7, host: 'node3', job_id: 'local:hq:900', error: 'exit code 7: boom' },
      // No host recorded: the local grid's job id says it.
      { run_number: 901, outcome: 'finished', attempt: 1, exit_code: 0, host: 'hq', job_id: 'local:hq:901', error: null },
    ]);
    const activity = await sql<Record<string, unknown>>`
      SELECT runs_claimed, runs_finished, jobs_failed, runs_failed, runs_rolled_back FROM operator_activity WHERE session_id = ${sessionId}::uuid`.execute(database.handle.db);
    // Rolled back: 902 (parent), 905 (credentials), 906 (revoked), 907, 909 (own session), 910 (reaper).
    expect(activity.rows).toEqual([{ runs_claimed: 12, runs_finished: 1, jobs_failed: 1, runs_failed: 0, runs_rolled_back: 6 }]);

    // A second attempt of run 900 is attempt 2 from its claim on.
    expect(await claimRuns(shifter.db, { productionId, parentId: null, session: { id: sessionId, user: 'dora' }, limit: 1 })).toEqual([900]);
    const claim = await sql<{ reason: string; attempt: number }>`
      SELECT reason, attempt FROM events WHERE production_id = ${productionId} AND run_number = 900 ORDER BY id DESC LIMIT 1`.execute(database.handle.db);
    expect(claim.rows).toEqual([{ reason: 'claimed', attempt: 2 }]);
  });

  it('an adoption and an action name their reason; the adopted job and attempt go with it', async () => {
    const { productionId } = await seedProduction(database.handle.db, { runs: 1, firstRun: 950, type: 'adopting' });
    const dead = await startSession(shifter.db, { user: 'dora', host: 'hq', pid: 2, productionId, options: {}, leaseSeconds: 60 });
    const live = await startSession(shifter.db, { user: 'dora', host: 'hq', pid: 3, productionId, options: {}, leaseSeconds: 60 });
    const actor = { user: 'dora', sessionId: dead };
    await claimRuns(shifter.db, { productionId, parentId: null, session: { id: dead, user: 'dora' }, limit: 1 });
    await transitionRuns(shifter.db, { productionId, runs: [{ run: 950, stagedPath: '/stage/950' }], from: 'claimed', to: 'staged', owner: dead, actor });
    await transitionRuns(shifter.db, { productionId, runs: [{ run: 950, jobId: '8123', jobToken: 't' }], from: 'staged', to: 'submitted', owner: dead, actor });
    expect(await adoptRuns(shifter.db, { productionId, runs: [950], from: dead, actor: { user: 'dora', sessionId: live }, message: 'adopted' })).toEqual([950]);
    await recordEvent(shifter.db, { productionId, actor: { user: 'dora', sessionId: live }, kind: 'pause', reason: 'paused', message: 'paused by dora: test' });
    const rows = await sql<Record<string, unknown>>`
      SELECT kind, reason, attempt, job_id FROM events WHERE production_id = ${productionId} AND kind IN ('adopt', 'pause', 'session-start') ORDER BY id`.execute(database.handle.db);
    expect(rows.rows).toEqual([
      { kind: 'session-start', reason: 'session_started', attempt: null, job_id: null },
      { kind: 'session-start', reason: 'session_started', attempt: null, job_id: null },
      { kind: 'adopt', reason: 'adopted', attempt: 1, job_id: '8123' },
      { kind: 'pause', reason: 'paused', attempt: null, job_id: null },
    ]);
  });
});
