import { DEFAULT_INFRASTRUCTURE_FAILURES, DEFAULT_INPUT_BYTES } from '../config/config.js';
import type { Archive } from '../archives/archive.js';
import { createArchive } from '../archives/index.js';
import { isDatabaseUnavailable } from '../db/connection.js';
import { pauseForInfrastructure } from '../state/auto-pause.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import { fenceOf } from './context.js';
import { reserveStagingRoom } from '../state/reservation.js';
import { downloadRun, inputUrl, stagedPathFor, type DownloadOutcome } from './download.js';
import { describeFault, withFault, type FaultStreak } from './fault-streak.js';
import { downloadOutcomeLine } from './messages.js';
import { planDownloads, type PlanInput } from './plan.js';
import type { DownloadProgress } from './snapshot.js';
import { measureStaging, type SpaceReading } from './space.js';
import type { Stage } from './stage.js';

interface ActiveDownload extends DownloadProgress {
  controller: AbortController;
  task: Promise<void>;
}

/**
 * The downloads of one session: which run is downloading now, whether the archive or the staging
 * area is failing (then downloads pause with a banner and back off, and no attempt is counted),
 * and the staging area as last measured. Each pass calls start(); a download that ends asks for a
 * pass at once (`wake`).
 */
export class DownloadSupervisor {
  private readonly active = new Map<number, ActiveDownload>();
  private archive: Archive | null = null;
  /** Downloads failing in a row through no fault of their runs; null while downloads work. */
  private fault: FaultStreak | null = null;
  /** The archive refused our credentials: no download until fixed and restarted. */
  private blocked: string | null = null;
  private space: SpaceReading | null = null;
  /** Why downloads are not starting, when they are not (shown on the display). */
  pausedReason: string | null = null;

  constructor(
    private readonly wake: () => void,
    private readonly changed: () => void,
    /** While the session aborts, a download's error is expected and not said. */
    private readonly aborting: () => boolean,
  ) {}

  get inFlight(): ReadonlyMap<number, DownloadProgress> {
    return this.active;
  }

  get runs(): ReadonlySet<number> {
    return new Set(this.active.keys());
  }

  get disk(): { usedPercent: number | null; source: string } {
    return { usedPercent: this.space?.usedPercent ?? null, source: this.space?.source ?? 'statfs' };
  }

  /** The production was resumed: whatever paused it was dealt with, so the fault streak starts again. */
  forgetFaults(): void {
    this.fault = null;
  }

  /** Stops every download and waits for them to settle (their runs stay as they are). */
  async stopAll(): Promise<void> {
    for (const download of this.active.values()) download.controller.abort();
    await Promise.allSettled([...this.active.values()].map((d) => d.task));
  }

  async close(): Promise<void> {
    await this.archive?.close();
  }

  /** Starts downloads; true when it moved runs to `downloading`. */
  async start(stage: Stage, plan: PlanInput<HeldRunDetail>): Promise<boolean> {
    const { production } = stage.job;
    if (production.config.input.kind !== 'archive') return false;
    const waitingOrInterrupted = plan.held.filter((r) => (r.status === 'claimed' || r.status === 'downloading') && !this.active.has(r.run));
    if (waitingOrInterrupted.length === 0) {
      this.pausedReason = null;
      return false;
    }
    if (this.blocked) {
      this.pausedReason = this.blocked;
      return false;
    }
    if (this.fault) {
      this.pausedReason = describeFault(this.fault);
      if (Date.now() < this.fault.retryAt || production.status !== 'active') return false;
    }
    const measuredFrom = Date.now();
    try {
      this.space = await measureStaging(production.config.stagingDir, production.config.quota);
      stage.journal.clearAlert('staging-failing');
    } catch (error) {
      this.pausedReason = `cannot measure the staging area: ${(error as Error).message}`;
      stage.journal.setAlert('staging-failing', `Cannot measure the staging area ${production.config.stagingDir}: ${(error as Error).message}; no new downloads`);
      return false;
    }
    const first = waitingOrInterrupted.find((r) => r.status === 'claimed') ?? waitingOrInterrupted[0]!;
    this.archive ??= await createArchive(inputUrl(stage.job, first).protocol.replace(':', ''), production.config.archive, production.config.input.source);
    const { resume, start, waiting } = planDownloads(plan, this.archive.parallel);
    for (const run of resume) this.launch(stage, run);
    if (waiting === 0) return false;
    if (this.space.usedPercent >= stage.options.spacelim) {
      return this.pause(stage, `staging area ${this.space.usedPercent.toFixed(1)}% used, at or above --spacelim ${stage.options.spacelim}%`);
    }
    this.pausedReason = null;
    if (start.length === 0) return false;
    const expected = (run: HeldRunDetail) => run.sizeBytes ?? production.config.archive.defaultBytes ?? DEFAULT_INPUT_BYTES;
    const reservation = await reserveStagingRoom(stage.job.db, fenceOf(stage.job), {
      stagingDir: production.config.stagingDir,
      spacelimPercent: stage.options.spacelim,
      space: this.space,
      measuredFrom,
      candidates: start.map((r) => ({ run: r.run, bytes: expected(r), stagedPath: stagedPathFor(stage.job, r) })),
    });
    if (reservation.kind === 'full') return this.pause(stage, reservation.reason);
    const moved = reservation.runs;
    if (moved.length) stage.journal.emit('download', null, `Staging runs: [${moved.join(', ')}]`);
    for (const run of start.filter((r) => moved.includes(r.run))) this.launch(stage, { ...run, status: 'downloading', jobId: null, jobToken: null });
    return moved.length > 0;
  }

  private pause(stage: Stage, reason: string): false {
    if (this.pausedReason !== reason) stage.journal.emit('warning', null, `Downloads paused: ${reason}`);
    this.pausedReason = reason;
    return false;
  }

  private launch(stage: Stage, run: HeldRunDetail): void {
    const controller = new AbortController();
    const entry: ActiveDownload = { controller, bytes: 0, total: run.sizeBytes, startedAt: Date.now(), task: Promise.resolve() };
    this.active.set(run.run, entry);
    const { journal } = stage;
    journal.emit('download', run.run, `Downloading run: ${run.run}`);
    entry.task = downloadRun(stage.job, this.archive!, run, controller.signal, {
      onProgress: (bytes, total) => {
        entry.bytes = bytes;
        entry.total = total ?? entry.total;
        this.changed();
      },
      onRetry: (attempt, error, delay) => journal.emit('warning', run.run, `Download of run ${run.run} failed (try ${attempt}): ${error}; retrying in ${delay}s`),
    })
      .then((outcome) => this.ended(stage, outcome))
      .catch((error: unknown) => {
        if (!this.aborting()) journal.emit('error', run.run, `Download of run ${run.run} failed: ${(error as Error).message}`);
      })
      .finally(() => {
        this.active.delete(run.run);
        this.wake();
      });
  }

  private ended(stage: Stage, outcome: DownloadOutcome): void {
    const { journal } = stage;
    switch (outcome.kind) {
      case 'staged':
        this.fault = null;
        journal.clearAlert('archive-failing', 'INFO: The archive answers again; downloads go on.');
        journal.clearAlert('staging-failing', 'INFO: The staging area takes files again; downloads go on.');
        break;
      case 'infrastructure':
        void this.afterInfrastructureFault(stage, outcome.run, outcome.where, outcome.error);
        break;
      case 'auth-failed':
        this.blocked = `archive refused the credentials: ${outcome.error}`;
        journal.setAlert('archive-auth', `Archive authentication failed; no new downloads until fixed and restarted: ${outcome.error}`);
        break;
      default:
        break;
    }
    const line = downloadOutcomeLine(outcome);
    if (line) journal.emit(line.kind, line.run, line.text);
  }

  /**
   * A download failed through no fault of its run: no attempt was counted and the run stays
   * `downloading`. Downloads pause with a banner and back off; after autoPause.infrastructure such
   * failures in a row the production pauses itself, so that no session keeps hammering a dead archive.
   */
  private async afterInfrastructureFault(stage: Stage, run: number, where: FaultStreak['where'], error: string): Promise<void> {
    const { production } = stage.job;
    this.fault = withFault(this.fault, where, error);
    stage.journal.emit('warning', run, `Download of run ${run} failed, not the run's fault (${where}): ${error}`);
    stage.journal.setAlert(where === 'archive' ? 'archive-failing' : 'staging-failing', describeFault(this.fault));
    const limit = production.config.autoPause.infrastructure ?? DEFAULT_INFRASTRUCTURE_FAILURES;
    if (this.fault.count < limit || production.status !== 'active') return;
    const what = where === 'archive' ? 'the archive cannot be read' : 'the staging area cannot be written';
    const reason = `${what}: ${this.fault.count} downloads in a row failed (${error})`;
    try {
      const paused = await pauseForInfrastructure(stage.job.db, production, stage.job.actor, reason);
      if (paused) await stage.autoPaused(paused);
    } catch (failure) {
      if (!isDatabaseUnavailable(failure)) throw failure;
    }
  }
}
