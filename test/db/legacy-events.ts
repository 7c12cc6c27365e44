import type { EventReason } from '../../src/core/event-reasons.js';
import type { RunStatus } from '../../src/core/statuses.js';

/**
 * Events as run-production wrote them up to migration 009, message for message (the formats of
 * src/session/jobs.ts, download.ts and operator-loop.ts, src/state/sessions.ts and src/admin/*.ts at
 * the commit before sql/010), each with the columns the back-fill of sql/010 is to give it.
 *
 *  run 1  downloaded, ran on slurm, finished on node7
 *  run 2  local jobs: exit 7, then exit 0 with invalid outputs on nodeX, then lost: failed
 *  run 3  input missing twice (counted): failed; an operator's retry brings it back
 *  run 4  wrong checksum every try (counted), then the archive refuses the credentials
 *  run 5  child run whose parent has no output
 *  run 6  its job cannot be prepared, twice: failed
 *  run 7  aborted on the grid (SIGINT), then drained before submission
 *  run 8  adopted by a reaper, its job revoked and ended by the wrapper
 *  run 9  reaped twice: lease expired (by a session), then ended still holding it (by `sessions --reap`)
 *  run 10 released by an operator (outside a session) while on the grid
 *  run 11 finished without a host, then validate --fix found it damaged
 */

export type Actor = 'alice' | 'bob' | 'carol';

export interface Columns {
  reason: EventReason;
  attempt: number | null;
  job_id: string | null;
  exit_code: number | null;
  host: string | null;
  error: string | null;
}

export interface LegacyEvent {
  by: Actor;
  run: number | null;
  kind: string;
  from: RunStatus | null;
  to: RunStatus | null;
  message: string | null;
  expected: Columns;
}

const columns = (reason: EventReason, more: Partial<Columns> = {}): Columns => ({
  reason,
  attempt: null,
  job_id: null,
  exit_code: null,
  host: null,
  error: null,
  ...more,
});

function move(by: Actor, run: number, path: `${RunStatus}>${RunStatus}`, message: string | null, expected: Columns): LegacyEvent {
  const [from, to] = path.split('>') as [RunStatus, RunStatus];
  return { by, run, kind: 'transition', from, to, message, expected };
}

function action(by: Actor, kind: string, message: string, reason: EventReason, run: number | null = null, status: RunStatus | null = null, more: Partial<Columns> = {}): LegacyEvent {
  return { by, run, kind, from: status, to: status, message, expected: columns(reason, more) };
}

/** Claim, download, stage (no attempt or job recorded before 010). */
function toStaged(by: Actor, run: number): LegacyEvent[] {
  return [
    move(by, run, 'new>claimed', null, columns('claimed')),
    move(by, run, 'claimed>downloading', 'download started', columns('download_started')),
    move(by, run, 'downloading>staged', `staged 1024 bytes from sftp://archive/raw/run${run}.mid`, columns('staged')),
  ];
}

/** Claim to submitted (and running unless `queued`): the job and attempt come from the submission's message. */
function toGrid(by: Actor, run: number, backend: string, job: string, attempt: number, queued = false): LegacyEvent[] {
  const onGrid = { job_id: job, attempt };
  return [
    ...toStaged(by, run),
    move(by, run, 'staged>submitted', `submitted to ${backend} as ${job}, attempt ${attempt}`, columns('submitted', onGrid)),
    ...(queued ? [] : [move(by, run, 'submitted>running', 'job started', columns('started', onGrid))]),
  ];
}

const reapedA = 'session aaaaaaaa (alice@ha pid 11) lease expired, last heartbeat 99s ago; reaped by session bbbbbbbb (bob)';
const released = 'released by carol (--force, session was live): session aaaaaaaa (alice@ha pid 11)';

export const LEGACY_EVENTS: readonly LegacyEvent[] = [
  action('carol', 'import', 'runs.csv: 11 new run(s), 0 updated', 'catalogue_imported'),
  action('carol', 'new-production', 'alcapana version 1 (tag v1) with 11 runs', 'production_created'),
  action('alice', 'session-start', 'alice@ha pid 11 started ({"nproc":4})', 'session_started'),
  action('bob', 'session-start', 'bob@hb pid 12 started ({"nproc":2})', 'session_started'),
  action('carol', 'limits', 'max-running none -> 4 by carol', 'limits_changed'),

  ...toGrid('alice', 1, 'slurm', '4242', 1),
  move('alice', 1, 'running>finished', 'finished on node7, attempt 1, 2048 bytes of output', columns('finished', { job_id: '4242', attempt: 1, exit_code: 0, host: 'node7' })),

  ...toGrid('alice', 2, 'local', 'local:hb:100', 1),
  move('alice', 2, 'running>new', 'attempt 1/3 failed: exit code 7: boom', columns('retry', { job_id: 'local:hb:100', attempt: 1, exit_code: 7, error: 'exit code 7: boom' })),
  ...toGrid('alice', 2, 'local', 'local:hb:101', 2, true),
  move('alice', 2, 'submitted>new', 'attempt 2/3 failed on nodeX: exit 0 but outputs not valid: tree: file is empty', columns('retry', {
    job_id: 'local:hb:101', attempt: 2, exit_code: 0, host: 'nodeX', error: 'exit 0 but outputs not valid: tree: file is empty',
  })),
  ...toGrid('alice', 2, 'local', 'local:hb:102', 3),
  move('alice', 2, 'running>failed', 'attempt 3/3 failed: job local:hb:102 lost: not known to the scheduler', columns('failed', {
    job_id: 'local:hb:102', attempt: 3, error: 'job local:hb:102 lost: not known to the scheduler',
  })),

  move('alice', 3, 'new>claimed', null, columns('claimed')),
  move('alice', 3, 'claimed>downloading', 'download started', columns('download_started')),
  move('alice', 3, 'downloading>new', 'input missing: /raw/run3.mid: no such file', columns('input_missing', { error: 'input missing: /raw/run3.mid: no such file' })),
  move('alice', 3, 'new>claimed', null, columns('claimed')),
  move('alice', 3, 'claimed>downloading', 'download started', columns('download_started')),
  move('alice', 3, 'downloading>failed', 'input missing: /raw/run3.mid: no such file', columns('input_missing', { error: 'input missing: /raw/run3.mid: no such file' })),
  move('carol', 3, 'failed>new', 'retry by carol: attempts reset (had 3)', columns('retried_by_operator')),
  action('carol', 'retry', 'retry by carol of 1 failed run(s) (runs 3): attempts reset to 0; runs 3', 'retried_by_operator'),

  move('alice', 4, 'new>claimed', null, columns('claimed')),
  move('alice', 4, 'claimed>downloading', 'download started', columns('download_started')),
  move('alice', 4, 'downloading>new', 'download failed 3 times: checksum mismatch: md5 0bad', columns('download_failed', { error: 'download failed 3 times: checksum mismatch: md5 0bad' })),
  move('alice', 4, 'new>claimed', null, columns('claimed')),
  move('alice', 4, 'claimed>downloading', 'download started', columns('download_started')),
  move('alice', 4, 'downloading>new', 'archive refused the credentials: Permission denied (publickey)', columns('archive_refused', {
    error: 'archive refused the credentials: Permission denied (publickey)',
  })),

  move('alice', 5, 'new>claimed', null, columns('claimed')),
  move('alice', 5, 'claimed>new', 'parent run has no recorded tree output', columns('parent_missing', { error: 'parent run has no recorded tree output' })),

  ...toStaged('alice', 6),
  move('alice', 6, 'staged>new', 'attempt 1/3 failed: the job could not be prepared: EACCES: mkdir /data/out', columns('prepare_failed', {
    attempt: 1, error: 'the job could not be prepared: EACCES: mkdir /data/out',
  })),
  ...toStaged('alice', 6),
  move('alice', 6, 'staged>failed', 'attempt 2/2 failed: the job could not be prepared: ENOSPC: no space left', columns('prepare_failed', {
    attempt: 2, error: 'the job could not be prepared: ENOSPC: no space left',
  })),

  ...toGrid('alice', 7, 'slurm', '5000', 1, true),
  move('alice', 7, 'submitted>new', 'aborted (SIGINT)', columns('rolled_back', { job_id: '5000', attempt: 1 })),
  move('alice', 7, 'new>claimed', null, columns('claimed')),
  move('alice', 7, 'claimed>new', 'drained: returned before submission', columns('rolled_back')),

  ...toGrid('alice', 8, 'local', 'local:other:9', 1),
  ...toStaged('alice', 9),
  ...toGrid('alice', 10, 'slurm', '6000', 1),
  action('bob', 'reap', reapedA, 'reaped'),
  action('bob', 'adopt', `adopted from ${reapedA}`, 'adopted', 8, 'running', { job_id: 'local:other:9', attempt: 1 }),
  move('bob', 9, 'staged>new', `returned: ${reapedA}`, columns('reaped')),
  move('bob', 8, 'running>new',
    'job local:other:9 was revoked and ended by its wrapper on other (exit 143): its session was reaped where the job could not be reached; not counted as an attempt, the run is redone',
    columns('revoked', { job_id: 'local:other:9', attempt: 1, error: 'job local:other:9 was revoked and ended by its wrapper on other (exit 143): its session was reaped where the job could not be reached' })),
  move('bob', 9, 'new>claimed', null, columns('claimed')),
  move('carol', 9, 'claimed>new', `returned: session bbbbbbbb (bob@hb pid 12) ended (${released}) still holding runs; recovered by carol`, columns('reaped')),
  move('carol', 10, 'running>new', `returned: ${released}`, columns('released', { job_id: '6000', attempt: 1 })),
  action('carol', 'release', `${released}; returned runs [10]; cancelled jobs 6000`, 'released'),

  ...toGrid('bob', 11, 'slurm', '7000', 1),
  move('bob', 11, 'running>finished', 'finished, attempt 1, 10 bytes of output', columns('finished', { job_id: '7000', attempt: 1, exit_code: 0 })),
  move('carol', 11, 'finished>new', 'validate --fix by carol: tree: file is empty', columns('validated_bad', { error: 'validate: tree: file is empty' })),
  action('carol', 'validate-fix', 'validate --fix by carol returned 1 damaged run(s) to new: 11', 'validated_bad'),

  action('carol', 'pause', 'paused by carol: disk full on /data', 'paused'),
  action('carol', 'resume', 'resumed (was paused: disk full on /data) by carol', 'resumed'),
  action('alice', 'pause', 'auto-paused: 10 consecutive failed job attempts (exit code 7 ×10); check the job logs, then run-production resume --production alcapana --version 1', 'auto_paused'),
  action('carol', 'close', 'closed by carol: done (3/11 finished, 3 failed, 5 never processed)', 'closed'),
  action('carol', 'resume', 'reopened (was closed) by carol', 'reopened'),
  action('bob', 'session-end', 'done', 'session_ended'),
  action('carol', 'note', 'written by hand', 'other'),
];

/** Where each run ends up after those events (production_runs.status). */
export const FINAL_STATUS: Record<number, RunStatus> = { 1: 'finished', 2: 'failed', 3: 'new', 4: 'new', 5: 'new', 6: 'failed', 7: 'new', 8: 'new', 9: 'new', 10: 'new', 11: 'new' };
