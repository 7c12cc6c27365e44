import type { ReapOutcome } from '../state/sessions.js';
import type { DownloadOutcome } from './download.js';
import type { JobOutcome } from './judge.js';
import type { LoopLine } from './snapshot.js';

/**
 * The lines a session writes, in the words AlCap's shifters know from run_production.py
 * ("Claimed run: 2091", "... Success!", "Finished run: 2091"). Pure: each returns the line (or
 * null when an outcome says nothing), and the loop's journal writes it.
 */

export const claimedLine = (run: number): LoopLine => ({ kind: 'claim', run, text: `Claimed run: ${run}` });

/** The line for a recorded outcome of a job. */
export function jobOutcomeLine(outcome: JobOutcome, maxAttempts: number): LoopLine {
  switch (outcome.kind) {
    case 'finished':
      return { kind: 'finish', run: outcome.run, text: `Finished run: ${outcome.run}` };
    case 'retry':
    case 'failed': {
      const code = outcome.exitCode === null ? 'no exit code' : `exit code ${outcome.exitCode}`;
      const firstLine = (outcome.error.split('\n').find((l) => l.trim()) ?? '').replace(/^exit code \d+(?: \([^)]*\))?: /, '');
      return outcome.kind === 'failed'
        ? { kind: 'fail', run: outcome.run, text: `Failed run: ${outcome.run} (${code}, attempt ${outcome.attempt}/${maxAttempts}, no attempts left): ${firstLine}` }
        : { kind: 'retry', run: outcome.run, text: `Retrying run: ${outcome.run} (${code}, attempt ${outcome.attempt}/${maxAttempts} failed): ${firstLine}` };
    }
    case 'revoked':
      return { kind: 'retry', run: outcome.run, text: `Redoing run: ${outcome.run} (its job was revoked by a reaper; not counted as an attempt)` };
    case 'lost-ownership':
      return lostLine(outcome.run);
  }
}

export const lostLine = (run: number): LoopLine => ({ kind: 'warning', run, text: `WARNING: run ${run} is no longer held by this session` });

/** The line for a download's end; null for those the loop says otherwise (a fault's banner) or not at all. */
export function downloadOutcomeLine(outcome: DownloadOutcome): LoopLine | null {
  switch (outcome.kind) {
    case 'staged':
      return { kind: 'download', run: outcome.run, text: `... Success! (run ${outcome.run}, ${outcome.bytes} bytes)` };
    case 'returned':
      return { kind: 'warning', run: outcome.run, text: `Download of run ${outcome.run} failed, returned to the pool: ${outcome.error}` };
    case 'failed':
      return { kind: 'fail', run: outcome.run, text: `Failed run: ${outcome.run} (download: ${outcome.error})` };
    case 'lost-ownership':
      return lostLine(outcome.run);
    case 'infrastructure':
    case 'auth-failed':
    case 'aborted':
      return null;
  }
}

export function reapLine(outcome: ReapOutcome): LoopLine {
  const { session } = outcome;
  return {
    kind: 'reap',
    run: null,
    text:
      `Reaped session ${session.id.slice(0, 8)} (${session.user}@${session.host}, heartbeat ${session.heartbeatAgeSeconds}s ago): returned [${outcome.returned.join(', ')}]` +
      (outcome.adopted.length ? `, adopted [${outcome.adopted.join(', ')}]` : ''),
  };
}

export const lostLeaseLine: LoopLine = {
  kind: 'error',
  run: null,
  text:
    'ERROR: This session lost its lease: another session reaped it (no heartbeat for longer than --lease), or an operator released it; ' +
    'its runs were returned to the pool or adopted. Exiting without touching them.',
};
