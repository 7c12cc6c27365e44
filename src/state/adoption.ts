import type { Kysely } from 'kysely';
import { isOnGridStatus } from '../core/held-run.js';
import type { Database } from '../db/schema.js';
import { GridUnavailableError, type Grid } from '../grids/grid.js';
import { createGrid } from '../grids/index.js';
import { readWrapperStatus, releaseJob, releasePathFor, revokeJob } from '../grids/wrapper.js';
import { statusFilePath } from '../outputs/paths.js';
import { getProduction } from './productions.js';
import type { AdoptionDecider, AdoptionDecision, HeldRun } from './sessions.js';

export interface AdoptionPolicy {
  /** adopt: keep live jobs of dead sessions running under the reaper; cancel: kill them and redo the runs. */
  orphans: 'adopt' | 'cancel';
  /** The reaping session's production and grid; null for `sessions --reap`, which has no session to watch jobs. */
  adopter: { productionId: number; grid: Grid } | null;
  /** How long to wait before looking again at a job that had just started when its release was revoked (see lookAfterRevoking). */
  recheckMs?: number;
}

const RECHECK_MS = 500;

/**
 * For a dead session's runs on the grid. A reaper of the same production adopts those whose job it
 * can reach (alive, or ended: the next poll judges those from the wrapper's status file like any
 * finished job); with `--orphans cancel`, and for `sessions --reap` (no session to watch them), live
 * reachable jobs are cancelled instead and their runs redone, so a new attempt never races an old job.
 *
 * A loop session never touches another production's jobs: reapExpiredSessions leaves such a
 * session alone while it has jobs on the grid; should one get here anyway, its runs on the grid are
 * kept held for a session of their own production.
 *
 * A job nobody here can reach (another host's local job, or a grid this host cannot drive) may
 * still be running, so its run must not go back to `new` on a guess: its release is revoked, which
 * makes what its status file says final (see lookAfterRevoking). Exit recorded: adopted and judged,
 * or, for `sessions --reap`, returned (the job is over). Started without an exit: adopted (the
 * wrapper ends the script within a second and records a revoked exit, which sends the run back to
 * `new` without counting an attempt), or for `sessions --reap` kept held until a session of the
 * production recovers it. Not started: it never will, the run goes back to `new`.
 */
export function adoptionDeciderFor(db: Kysely<Database>, policy: AdoptionPolicy): AdoptionDecider {
  return async (session, runs): Promise<AdoptionDecision | null> => {
    const onGrid = runs.filter((r) => isOnGridStatus(r.status) && r.jobId);
    if (session.productionId === null || onGrid.length === 0) return { adopt: [], keep: [] };
    const production = await getProduction(db, session.productionId);
    const sameProduction = policy.adopter?.productionId === production.id;
    if (policy.adopter && !sameProduction) return { adopt: [], keep: onGrid.map((r) => r.run) };
    // Only a session can watch adopted jobs; `sessions --reap` has none.
    const mayAdopt = sameProduction;
    const grid = sameProduction ? policy.adopter!.grid : await createGrid(production.config.job).catch(() => null);
    const statusPathOf = (r: HeldRun) => statusFilePath(production.config, { type: production.type, version: production.version, run: r.run }, r.attempts + 1);
    const reachable = grid ? onGrid.filter((r) => grid.canReach(r.jobId!)) : [];
    const unreachable = onGrid.filter((r) => !reachable.includes(r));
    const adopt: number[] = [];
    const keep: number[] = [];

    if (reachable.length) {
      try {
        if (mayAdopt && policy.orphans === 'adopt') {
          // The dead session may have recorded a job and died before releasing it: the database says
          // it is the run's job, so release it (again: writing the same token twice is harmless; a
          // revoked release stays revoked).
          for (const r of reachable) if (r.status === 'submitted' && r.jobToken) await releaseJob({ path: releasePathFor(statusPathOf(r)), token: r.jobToken });
          adopt.push(...reachable.map((r) => r.run));
        } else {
          const states = await grid!.poll(reachable.map((r) => ({ jobId: r.jobId!, statusPath: statusPathOf(r) })));
          const alive = reachable.filter((r) => {
            const state = states.get(r.jobId!)?.state;
            return state === 'queued' || state === 'running';
          });
          await grid!.cancel(alive.map((r) => r.jobId!));
        }
      } catch (error) {
        // The scheduler does not answer: whether the jobs are alive is unknown, so nothing is decided now.
        if (error instanceof GridUnavailableError) return null;
        throw error;
      }
    }

    if (unreachable.length) {
      const looks = await lookAfterRevoking(unreachable.map(statusPathOf), policy.recheckMs ?? RECHECK_MS);
      unreachable.forEach((r, i) => {
        const look = looks[i]!;
        if (look === 'ended') {
          if (mayAdopt) adopt.push(r.run);
        } else if (look === 'started' || look === 'unseen') {
          (mayAdopt ? adopt : keep).push(r.run);
        }
      });
    }
    return { adopt, keep };
  };
}

/** `unseen`: the job's directory is not there (a host that does not see the shared filesystem): nothing can be told. */
export type RevokedJobLook = 'ended' | 'started' | 'not-started' | 'unseen';

/**
 * Revokes the releases of jobs this host cannot reach, then reads their wrapper status files: after
 * the revocation, what they say is final. The wrapper reads its release once more after writing its
 * start record, and leaves without running the script (removing that record) if it was revoked;
 * so a job whose status file is missing here, after the revocation, never runs the script. A start
 * record seen here may still be such a job's, removed a moment later: those are looked at once
 * more after `recheckMs`, and one gone by then had not started either. (The residual: a wrapper
 * held up for longer than that between writing its start record and reading its release, two
 * adjacent commands, would be adopted and then removes its record; the adopter then sees a job
 * that never starts, as for any job whose wrapper vanished before it wrote anything.)
 */
export async function lookAfterRevoking(statusPaths: readonly string[], recheckMs: number): Promise<RevokedJobLook[]> {
  // The job's directory exists wherever the job can run: its session made it before submitting.
  const unseen = new Set<string>();
  for (const path of statusPaths) {
    await revokeJob({ path: releasePathFor(path) }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      unseen.add(path);
    });
  }
  const look = async (path: string): Promise<RevokedJobLook> => {
    if (unseen.has(path)) return 'unseen';
    const status = await readWrapperStatus(path);
    return status === undefined ? 'not-started' : status.exit !== undefined ? 'ended' : 'started';
  };
  const looks = await Promise.all(statusPaths.map(look));
  if (looks.includes('started')) {
    await new Promise((resolve) => setTimeout(resolve, recheckMs));
    for (const [i, path] of statusPaths.entries()) if (looks[i] === 'started') looks[i] = await look(path);
  }
  return looks;
}
