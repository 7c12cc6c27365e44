import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { sql } from 'kysely';
import { EXIT, ExpectedError } from '../core/errors.js';
import { DEFAULT_INFRASTRUCTURE_FAILURES, DEFAULT_INPUT_BYTES } from '../config/config.js';
import { isDatabaseUnavailable, type DatabaseHandle } from '../db/connection.js';
import { abortInFlightCommands, inFlightCommands } from '../grids/command.js';
import type { Grid, JobState } from '../grids/grid.js';
import { GridUnavailableError } from '../grids/grid.js';
import { createGrid } from '../grids/index.js';
import { releaseJob } from '../grids/wrapper.js';
import { partialDownloadPath } from '../outputs/paths.js';
import type { Archive } from '../archives/archive.js';
import { createArchive } from '../archives/index.js';
import { adoptionDeciderFor } from '../state/adoption.js';
import { checkAutoPause, pauseForInfrastructure } from '../state/auto-pause.js';
import { claimRuns } from '../state/claim.js';
import type { ProductionCounts } from '../state/counts.js';
import { crashPointForTests } from '../core/crash-points.js';
import { diskFault, whyNotCreated } from '../core/disk-faults.js';
import { downloadRun, inputUrl, stagedPathFor } from './download.js';
import { describeFault, withFault, type FaultStreak } from './fault-streak.js';
import { SessionHeartbeat, watchdogSeconds } from './heartbeat.js';
import {
  assessEndedJob,
  ensureModulesFile,
  failAttemptBeforeSubmit,
  isInStaging,
  jobStatusPath,
  prepareJob,
  readHeldRuns,
  recordJudgements,
  removeAttemptFiles,
  removeStagedInput,
  type HeldRunDetail,
  type JobContext,
  type JobOutcome,
  type Judgement,
} from './jobs.js';
import { describeFrozen, getProduction, refreshProductionState, requireIntactConfig, type Production } from '../state/productions.js';
import { endSession, reapExpiredSessions, removeReturnedFiles, sessionEnded, startSession, type ReapOutcome } from '../state/sessions.js';
import type { Snapshot, SnapshotAlert, SnapshotEvent, SnapshotSource } from './snapshot.js';
import { readSnapshotBase, throughputOf } from '../state/snapshot-queries.js';
import { measureStaging, type SpaceReading } from './space.js';
import { HELD_STATUSES, type HeldStatus } from '../core/statuses.js';
import { returnRunsToPool, transitionRuns } from '../state/transition.js';

/**
 * The operator loop: every --pause seconds, and at once when a download or a
 * job ends, it heartbeats, reaps expired sessions, judges this session's ended
 * jobs, claims runs up to nproc + nprep, starts downloads (at most nprep staged
 * ahead, while the staging area is below --spacelim) and submits staged runs
 * while fewer than nproc of its jobs are on the grid. It publishes a snapshot
 * for a display and a line per event for the plain log; it knows no screen.
 */

export interface LoopOptions {
  nproc: number;
  nprep: number;
  spacelim: number;
  pauseSeconds: number;
  datasets: string[];
  limit: number | null;
  /**
   * When the session ends by itself. done: once every run (of --dataset, when given) is finished or
   * failed, whoever did them; until then it keeps passing, so it reaps, adopts and claims whatever
   * comes back. idle: once this session holds nothing and nothing is left to claim right now.
   * null: never (it waits for work).
   */
  until: 'done' | 'idle' | null;
  leaseSeconds: number;
  orphans: 'adopt' | 'cancel';
  /** Seconds a pass may make no progress before the session stops heartbeating; null: watchdogSeconds(). */
  watchdogSeconds: number | null;
}

export type AbortReason = 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'error';
const ABORT_EXIT: Record<AbortReason, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, error: 1 };

export interface LoopResult {
  exitCode: number;
  reason: string;
}

export interface LoopLine {
  kind: SnapshotEvent['kind'];
  run: number | null;
  text: string;
}

interface ActiveDownload {
  controller: AbortController;
  bytes: number;
  total: number | null;
  startedAt: number;
  task: Promise<void>;
}

const SESSION_EVENTS_KEPT = 50;
/** A scheduler command still running after this long is named on screen. */
const HANGING_COMMAND_MS = 5_000;

const formatGiB = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

export class OperatorLoop implements SnapshotSource {
  private production: Production;
  private sessionId = '';
  private grid!: Grid;
  private archive: Archive | null = null;
  private modulesFile = '';
  private readonly downloads = new Map<number, ActiveDownload>();
  private held: HeldRunDetail[] = [];
  private claimsMade = 0;
  private draining = false;
  private claimingPaused = false;
  private aborting = false;
  private stopped = false;
  private archiveBlocked: string | null = null;
  /** Downloads failing in a row through no fault of their runs; null while downloads work. */
  private downloadFault: FaultStreak | null = null;
  /** Renews the lease on its own timer; null until the session exists. */
  private heartbeat: SessionHeartbeat | null = null;
  /** Until when this pass may still run scheduler commands (epoch ms); see schedulerBudgetMs. */
  private passDeadline = Infinity;
  private readonly alerts = new Map<SnapshotAlert['kind'], SnapshotAlert>();
  private readonly events: SnapshotEvent[] = [];
  private space: SpaceReading | null = null;
  private downloadsPausedReason: string | null = null;
  private snapshot: Snapshot | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly lineListeners = new Set<(line: LoopLine) => void>();
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private tickAgain = false;
  private nextTickAt = Date.now();
  private readonly startedAt = Date.now();
  private finish!: (result: LoopResult) => void;
  private readonly finished: Promise<LoopResult>;
  private abortInProgress: Promise<void> | null = null;

  constructor(
    private readonly handle: DatabaseHandle,
    production: Production,
    private readonly options: LoopOptions,
    private readonly who: { user: string; host: string; databaseLabel: string; keysEnabled: boolean },
  ) {
    this.production = production;
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  private get db() {
    return this.handle.db;
  }

  private get context(): JobContext {
    return { db: this.db, production: this.production, actor: { user: this.who.user, sessionId: this.sessionId } };
  }

  // --- what a display or the plain log sees -------------------------------------------------

  onLine(listener: (line: LoopLine) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  getSnapshot(): Snapshot {
    if (!this.snapshot) throw new Error('the loop has not started');
    return this.snapshot;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get id(): string {
    return this.sessionId;
  }

  private emit(kind: LoopLine['kind'], run: number | null, text: string): void {
    const line = { kind, run, text };
    this.events.unshift({ at: Date.now(), ...line });
    this.events.length = Math.min(this.events.length, SESSION_EVENTS_KEPT);
    for (const listener of this.lineListeners) listener(line);
    this.publish();
  }

  private setAlert(kind: SnapshotAlert['kind'], message: string): void {
    const existing = this.alerts.get(kind);
    if (existing?.message === message) return;
    this.alerts.set(kind, { kind, message, since: existing?.since ?? Date.now() });
    this.emit(kind === 'draining' ? 'info' : 'warning', null, `WARNING: ${message}`);
  }

  private clearAlert(kind: SnapshotAlert['kind'], recovered?: string): void {
    if (this.alerts.delete(kind) && recovered) this.emit('info', null, recovered);
  }

  // --- life cycle ---------------------------------------------------------------------------

  /** Creates the session; resolves when the loop ends (done, drained, limit reached, aborted). */
  async run(): Promise<LoopResult> {
    requireIntactConfig(this.production);
    this.grid = await createGrid(this.production.config.job, { onJobExit: () => this.requestTick() });
    // Before the session exists: a dataDir this account cannot write to is the shifter's to fix, and
    // must not leave a session row behind (or a stack trace).
    this.modulesFile = await ensureModulesFile(this.production).catch(async (failure: NodeJS.ErrnoException) => {
      const error = await whyNotCreated(this.production.config.dataDir, failure);
      throw new ExpectedError(
        `Cannot write to the production's dataDir ${this.production.config.dataDir} (${error.code ?? error.message}: ${error.path ?? ''}); ` +
          'make it writable for this account, or fix dataDir in the config and start a new version.',
        EXIT.cantCreate,
      );
    });
    this.sessionId = await startSession(this.db, {
      user: this.who.user,
      host: this.who.host,
      pid: process.pid,
      productionId: this.production.id,
      options: { ...this.options },
      leaseSeconds: this.options.leaseSeconds,
    });
    this.heartbeat = this.startHeartbeat();
    this.emit('info', null, `INFO: Session ${this.sessionId.slice(0, 8)} on ${this.production.type} v${this.production.version} (tag ${this.production.tag}) as ${this.who.user}@${this.who.host}`);
    this.emit('info', null, `INFO: Running the ${describeFrozen(this.production)}`);
    await this.buildSnapshot();
    this.markReady();
    this.requestTick();
    return this.finished;
  }

  private markReady!: () => void;
  private readonly readyPromise = new Promise<void>((resolve) => (this.markReady = resolve));

  /** Resolves once the session exists and the first snapshot is published (a display can start then). */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** Run the loop body now (or right after the current pass). */
  requestTick(): void {
    if (this.stopped || this.aborting) return;
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.ticking = this.tick()
      .catch((error: unknown) => {
        if (!isDatabaseUnavailable(error)) return this.abort('error', error);
        // An outage, not a bug: keep the jobs, stop starting work after half the lease, try again next pass.
        this.databaseUnreachable(error as Error);
      })
      .finally(() => {
        this.ticking = null;
        this.heartbeat?.passEnded();
        if (this.stopped || this.aborting) return;
        if (this.tickAgain) {
          this.tickAgain = false;
          this.requestTick();
          return;
        }
        this.nextTickAt = Date.now() + this.options.pauseSeconds * 1000;
        this.timer = setTimeout(() => this.requestTick(), this.options.pauseSeconds * 1000);
        this.publish();
      });
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const heartbeat = this.heartbeat!;
    // 1. The heartbeat runs on its own timer (startHeartbeat); a pass only reports its progress to
    // the watchdog, and gives its scheduler commands a time budget.
    heartbeat.passStarted('reaping expired sessions');
    this.passDeadline = Date.now() + this.schedulerBudgetMs();
    // 2. Reap sessions whose lease expired; adopt our production's jobs. Not before this session has
    // itself been connected for a lease: after an outage everybody's heartbeat is old.
    if (!heartbeat.degraded) {
      const reaped = await reapExpiredSessions(this.db, this.context.actor, {
        decide: adoptionDeciderFor(this.db, { orphans: this.options.orphans, adopter: { productionId: this.production.id, grid: this.grid } }),
        reaperConnectedSeconds: heartbeat.connectedSeconds,
        adopterProductionId: this.production.id,
      });
      for (const outcome of reaped) await this.afterReap(outcome);
    }
    // 3. The production as others may have changed it (paused, limits).
    heartbeat.progress('reading the production');
    const wasActive = this.production.status === 'active';
    this.production = await refreshProductionState(this.db, this.production);
    if (this.production.status !== 'active') {
      this.setAlert('production-paused', `Production ${this.production.status}${this.production.statusReason ? `: ${this.production.statusReason}` : ''}`);
    } else {
      // Resumed: whatever paused it was dealt with, so the download fault streak starts again.
      if (!wasActive) this.downloadFault = null;
      this.clearAlert('production-paused', 'INFO: Production active again.');
    }
    // 4. Jobs that ended. Each step below re-reads the held runs only when it moved some.
    await this.loadHeld();
    heartbeat.progress(`polling the ${this.grid.backend} jobs`);
    if (await this.pollJobs()) await this.loadHeld();
    // 5. Claim.
    heartbeat.progress('claiming');
    await this.claim();
    // 6. Downloads, 7. submissions.
    heartbeat.progress('starting downloads');
    const downloading = await this.startDownloads();
    heartbeat.progress('submitting');
    if ((await this.submit()) || downloading) await this.loadHeld();
    heartbeat.progress('reading the counts');
    await this.buildSnapshot();
    await this.checkDone();
  }

  /**
   * Scheduler commands of one pass (the poll's per-job lookups, one sbatch per free slot) stop
   * once this much time is used, and go on next pass: a scheduler answering slowly makes passes
   * longer, never endless. Half a lease, and at least one command's timeout.
   */
  private schedulerBudgetMs(): number {
    return Math.max(this.commandTimeoutSeconds(), this.options.leaseSeconds / 2) * 1000;
  }

  private commandTimeoutSeconds(): number {
    const configured = this.production.config.job.options.commandTimeoutSeconds;
    return typeof configured === 'number' && configured > 0 ? configured : 30;
  }

  private startHeartbeat(): SessionHeartbeat {
    const heartbeat = new SessionHeartbeat(
      this.db,
      this.sessionId,
      {
        leaseSeconds: this.options.leaseSeconds,
        watchdogSeconds: this.options.watchdogSeconds ?? watchdogSeconds(this.options.leaseSeconds, this.commandTimeoutSeconds()),
      },
      {
        fenced: () => void this.fencedOut(),
        reachable: () => this.clearAlert('database-unreachable', 'INFO: The database answers again.'),
        unreachable: (_silent, error) => this.databaseUnreachable(error),
        stuck: (state) =>
          state
            ? this.setAlert(
                'session-stuck',
                `No progress for ${state.seconds}s while ${state.step}; not heartbeating, claiming or submitting, so that another session can take over this session's runs`,
              )
            : this.clearAlert('session-stuck', 'INFO: The loop moves again.'),
        beat: () => this.showHangingCommands(),
      },
    );
    heartbeat.start();
    return heartbeat;
  }

  private databaseUnreachable(error: Error): void {
    const silent = this.heartbeat?.silentSeconds ?? 0;
    const stopped = this.heartbeat?.degraded ? '; not claiming or submitting' : '';
    this.setAlert('database-unreachable', `Database unreachable for ${Math.round(silent)}s (${error.message.split('\n')[0]})${stopped}`);
    this.publish();
  }

  /** A banner naming a scheduler command that has been running for a while (its timeout still holds). */
  private showHangingCommands(): void {
    const now = Date.now();
    const slow = inFlightCommands().filter((c) => now - c.startedAt > HANGING_COMMAND_MS);
    if (slow.length === 0) return this.clearAlert('scheduler-slow', 'INFO: The scheduler answers again.');
    const oldest = slow[0]!;
    this.setAlert(
      'scheduler-slow',
      `${oldest.label} has not answered for ${Math.round((now - oldest.startedAt) / 1000)}s (timeout ${this.commandTimeoutSeconds()}s)` +
        (slow.length > 1 ? `, and ${slow.length - 1} more command(s)` : ''),
    );
  }

  private async afterReap(outcome: ReapOutcome): Promise<void> {
    const { session } = outcome;
    this.emit(
      'reap',
      null,
      `Reaped session ${session.id.slice(0, 8)} (${session.user}@${session.host}, heartbeat ${session.heartbeatAgeSeconds}s ago): returned [${outcome.returned.join(', ')}]` +
        (outcome.adopted.length ? `, adopted [${outcome.adopted.join(', ')}]` : ''),
    );
    await removeReturnedFiles(outcome, async (id) => (id === this.production.id ? this.production : await getProduction(this.db, id)).config.stagingDir);
  }

  private async loadHeld(): Promise<void> {
    this.held = await readHeldRuns(this.db, this.sessionId);
  }


  // --- jobs ---------------------------------------------------------------------------------

  /** Judges this session's jobs; true when it moved any run. */
  private async pollJobs(): Promise<boolean> {
    const onGrid = this.held.filter((r) => (r.status === 'submitted' || r.status === 'running') && r.jobId);
    if (onGrid.length === 0) return false;
    let states: Map<string, JobState>;
    try {
      states = await this.grid.poll(
        onGrid.map((r) => ({ jobId: r.jobId!, statusPath: jobStatusPath(this.context, r) })),
        { deadline: this.passDeadline },
      );
      this.clearAlert('backend-failing', `INFO: The ${this.grid.backend} backend answers again.`);
    } catch (error) {
      if (!(error instanceof GridUnavailableError)) throw error;
      this.setAlert('backend-failing', `${this.grid.backend} backend failing: ${error.message}`);
      return false;
    }
    let moved = false;
    const nowRunning = onGrid.filter((r) => r.status === 'submitted' && states.get(r.jobId!)?.state === 'running');
    if (nowRunning.length) {
      moved = true;
      await transitionRuns(this.db, {
        productionId: this.production.id,
        runs: nowRunning.map((r) => r.run),
        from: 'submitted',
        to: 'running',
        owner: this.sessionId,
        actor: this.context.actor,
        message: 'job started',
      });
    }
    // Every ended job of this pass is judged first (files only), then recorded in one statement per
    // kind of move: a pass that finds a hundred jobs ended writes them in one or two statements.
    const judgements: Judgement[] = [];
    for (const run of onGrid) {
      const state = states.get(run.jobId!);
      if (!state || (state.state !== 'done' && state.state !== 'lost')) continue;
      judgements.push(await assessEndedJob(this.context, run, state));
    }
    if (judgements.length === 0) return moved;
    const outcomes = await recordJudgements(this.context, judgements);
    this.reportOutcomes(outcomes);
    if (outcomes.some((o) => o.kind === 'retry' || o.kind === 'failed')) {
      // K failed attempts in a row: stop everybody burning runs on a broken configuration.
      const paused = await checkAutoPause(this.db, this.production, this.context.actor);
      if (paused) {
        this.production = await refreshProductionState(this.db, this.production);
        this.setAlert('production-paused', `Production paused automatically: ${paused}`);
      }
    }
    return true;
  }

  /** The AlCap-style line for each recorded outcome of a job. */
  private reportOutcomes(outcomes: readonly JobOutcome[]): void {
    for (const outcome of outcomes) {
      switch (outcome.kind) {
        case 'finished':
          this.emit('finish', outcome.run, `Finished run: ${outcome.run}`);
          break;
        case 'retry':
        case 'failed': {
          const code = outcome.exitCode === null ? 'no exit code' : `exit code ${outcome.exitCode}`;
          const firstLine = (outcome.error.split('\n').find((l) => l.trim()) ?? '').replace(/^exit code \d+(?: \([^)]*\))?: /, '');
          this.emit(
            outcome.kind === 'failed' ? 'fail' : 'retry',
            outcome.run,
            outcome.kind === 'failed'
              ? `Failed run: ${outcome.run} (${code}, attempt ${outcome.attempt}/${this.production.maxAttempts}, no attempts left): ${firstLine}`
              : `Retrying run: ${outcome.run} (${code}, attempt ${outcome.attempt}/${this.production.maxAttempts} failed): ${firstLine}`,
          );
          break;
        }
        case 'revoked':
          this.emit('retry', outcome.run, `Redoing run: ${outcome.run} (its job was revoked by a reaper; not counted as an attempt)`);
          break;
        case 'lost-ownership':
          this.emit('warning', outcome.run, `WARNING: run ${outcome.run} is no longer held by this session`);
          break;
      }
    }
  }

  private canStartWork(): boolean {
    return !this.draining && !this.heartbeat?.degraded && !this.aborting && this.production.status === 'active';
  }

  private async claim(): Promise<void> {
    if (!this.canStartWork() || this.claimingPaused) return;
    let want = this.options.nproc + this.options.nprep - this.held.length;
    if (this.options.limit !== null) want = Math.min(want, this.options.limit - this.claimsMade);
    if (want <= 0) return;
    const claimed = await claimRuns(this.db, {
      productionId: this.production.id,
      parentId: this.production.parentId,
      session: { id: this.sessionId, user: this.who.user },
      limit: want,
      datasets: this.options.datasets,
    });
    this.claimsMade += claimed.length;
    for (const run of claimed) this.emit('claim', run, `Claimed run: ${run}`);
    if (claimed.length === 0) return;
    await this.loadHeld();
    const input = this.production.config.input;
    if (input.kind === 'parent') await this.stageFromParent(input.output);
    else if (this.production.config.archive.prestage) this.prestage(this.held.filter((r) => claimed.includes(r.run)));
  }

  /**
   * Tape-backed archives: tell the archive which files are coming (AlCap sent an
   * FTP STAGE per claimed run). Runs beside the loop; a failure is only a warning,
   * since the download itself will still ask for the file.
   */
  private prestage(runs: HeldRunDetail[]): void {
    const command = this.production.config.archive.prestage!;
    const files = runs.map((r) => {
      const url = inputUrl(this.context, r);
      return url.protocol === 'file:' ? decodeURIComponent(url.pathname) : url.href;
    });
    execFile('/bin/sh', ['-c', `${command} "$@"`, 'prestage', ...files], { timeout: 300_000 }, (error, _stdout, stderr) => {
      if (error) this.emit('warning', null, `WARNING: prestage command failed (${stderr.trim().split('\n')[0] || error.message}); downloads go on`);
      else this.emit('info', null, `INFO: prestaged ${files.length} file(s)`);
    });
  }

  /** A child production's input is the parent run's recorded output, used in place. */
  private async stageFromParent(outputName: string): Promise<void> {
    const claimed = this.held.filter((r) => r.status === 'claimed');
    if (!claimed.length || this.production.parentId === null) return;
    const parents = await this.db
      .selectFrom('production_runs')
      .select(['run_number', 'outputs'])
      .where('production_id', '=', this.production.parentId)
      .where('run_number', 'in', claimed.map((r) => r.run))
      .where('status', '=', 'finished')
      .execute();
    const inputs = new Map(parents.map((p) => [p.run_number, p.outputs?.[outputName]]));
    const ready = claimed.filter((r) => inputs.get(r.run));
    await transitionRuns(this.db, {
      productionId: this.production.id,
      runs: ready.map((r) => ({ run: r.run, stagedPath: inputs.get(r.run)! })),
      from: 'claimed',
      to: 'staged',
      owner: this.sessionId,
      actor: this.context.actor,
      message: `input is the parent production's ${outputName} output`,
    });
    const missing = claimed.filter((r) => !inputs.get(r.run));
    await transitionRuns(this.db, {
      productionId: this.production.id,
      runs: missing.map((r) => ({ run: r.run, lastError: `parent run has no recorded ${outputName} output` })),
      from: 'claimed',
      to: 'new',
      owner: this.sessionId,
      actor: this.context.actor,
      message: `parent run has no recorded ${outputName} output`,
    });
    await this.loadHeld();
  }

  // --- downloads ----------------------------------------------------------------------------

  /** Starts downloads; true when it moved runs to `downloading`. */
  private async startDownloads(): Promise<boolean> {
    if (this.production.config.input.kind !== 'archive' || this.aborting || this.draining) return false;
    // Runs left `downloading` with no download under way: their download met an infrastructure fault,
    // or ended while the database was down. They keep their reservation and start again from here.
    const interrupted = this.held.filter((r) => r.status === 'downloading' && !this.downloads.has(r.run));
    const waiting = this.held.filter((r) => r.status === 'claimed' && !this.downloads.has(r.run));
    if (waiting.length === 0 && interrupted.length === 0) {
      this.downloadsPausedReason = null;
      return false;
    }
    if (this.archiveBlocked) {
      this.downloadsPausedReason = this.archiveBlocked;
      return false;
    }
    if (this.downloadFault) {
      const banner = describeFault(this.downloadFault);
      this.downloadsPausedReason = banner;
      if (Date.now() < this.downloadFault.retryAt || this.production.status !== 'active') return false;
    }
    const measuredFrom = Date.now();
    try {
      this.space = await measureStaging(this.production.config.stagingDir, this.production.config.quota);
      this.clearAlert('staging-failing');
    } catch (error) {
      this.downloadsPausedReason = `cannot measure the staging area: ${(error as Error).message}`;
      this.setAlert('staging-failing', `Cannot measure the staging area ${this.production.config.stagingDir}: ${(error as Error).message}; no new downloads`);
      return false;
    }
    this.archive ??= await createArchive(
      inputUrl(this.context, (waiting[0] ?? interrupted[0])!).protocol.replace(':', ''),
      this.production.config.archive,
      this.production.config.input.source,
    );
    // Interrupted downloads first: they hold their reservation already, so they need no new room.
    for (const run of interrupted.slice(0, Math.max(this.archive.parallel - this.downloads.size, 0))) this.launchDownload(run);
    if (waiting.length === 0) return false;
    if (this.space.usedPercent >= this.options.spacelim) {
      const reason = `staging area ${this.space.usedPercent.toFixed(1)}% used, at or above --spacelim ${this.options.spacelim}%`;
      if (this.downloadsPausedReason !== reason) this.emit('warning', null, `Downloads paused: ${reason}`);
      this.downloadsPausedReason = reason;
      return false;
    }
    this.downloadsPausedReason = null;
    // Inputs for the free job slots, plus at most nprep staged ahead of the running jobs.
    const staged = this.held.filter((r) => r.status === 'staged').length;
    const onGrid = this.held.filter((r) => r.status === 'submitted' || r.status === 'running').length;
    const wanted = Math.max(this.options.nproc - onGrid, 0) + this.options.nprep - staged - this.downloads.size;
    const room = Math.min(wanted, this.archive.parallel - this.downloads.size);
    const candidates = waiting.slice(0, Math.max(room, 0));
    if (candidates.length === 0) return false;
    const moved = await this.reserveAndStart(candidates, this.space, measuredFrom);
    if (moved === null) return false;
    if (moved.length) this.emit('download', null, `Staging runs: [${moved.join(', ')}]`);
    for (const run of candidates.filter((r) => moved.includes(r.run))) this.launchDownload({ ...run, status: 'downloading' });
    return moved.length > 0;
  }

  /**
   * Moves runs to `downloading`, reserving their expected bytes, only as far as
   * the staging area stays below --spacelim counting every session's
   * reservations there. Serialised per staging directory, so two sessions
   * never both see the same room. Null when nothing fits.
   *
   * `space` was measured from `measuredFrom` on, before the lock: a download of
   * another session that ended since then is in neither that reading nor the
   * reservations, so the inputs that reached staging since then (a second of
   * margin for the mover's clock) are counted as reserved too.
   */
  private async reserveAndStart(candidates: HeldRunDetail[], space: SpaceReading, measuredFrom: number): Promise<number[] | null> {
    const stagingDir = this.production.config.stagingDir.replace(/\/+$/, '') + '/';
    return this.db.transaction().execute(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${'run-production staging ' + stagingDir}))`.execute(tx);
      const sinceSeconds = (Date.now() - measuredFrom) / 1000 + 1;
      const reserved = await sql<{ bytes: number }>`
        SELECT coalesce(sum(staged_bytes), 0)::bigint AS bytes FROM production_runs
         WHERE session_id IS NOT NULL -- downloads are held runs: read through the session index
           AND starts_with(staged_path, ${stagingDir})
           AND (status = 'downloading'
                OR (status IN ('staged', 'submitted', 'running')
                    AND status_changed_at >= clock_timestamp() - ${sinceSeconds}::float8 * interval '1 second'))`.execute(tx);
      const limitBytes = (space.totalBytes * this.options.spacelim) / 100;
      let projected = space.usedBytes + reserved.rows[0]!.bytes;
      const chosen: HeldRunDetail[] = [];
      for (const run of candidates) {
        const size = this.expectedBytes(run);
        if (projected + size >= limitBytes && chosen.length > 0) break;
        if (projected + size >= limitBytes) {
          const reason =
            `staging area would pass --spacelim ${this.options.spacelim}%: ${formatGiB(space.usedBytes)} used + ` +
            `${formatGiB(reserved.rows[0]!.bytes)} reserved by downloads in flight or just ended + ${formatGiB(size)} for run ${run.run}`;
          if (this.downloadsPausedReason !== reason) this.emit('warning', null, `Downloads paused: ${reason}`);
          this.downloadsPausedReason = reason;
          return null;
        }
        projected += size;
        chosen.push(run);
      }
      return transitionRuns(tx, {
        productionId: this.production.id,
        // The reservation: expected bytes and where they go; a reaper also uses the path to clean up.
        runs: chosen.map((r) => ({ run: r.run, stagedBytes: this.expectedBytes(r), stagedPath: stagedPathFor(this.context, r) })),
        from: 'claimed',
        to: 'downloading',
        owner: this.sessionId,
        actor: this.context.actor,
        message: 'download started',
      });
    });
  }

  /** What a download reserves: the catalogue's size, else the configured default (never 0 bytes). */
  private expectedBytes(run: HeldRunDetail): number {
    return run.sizeBytes ?? this.production.config.archive.defaultBytes ?? DEFAULT_INPUT_BYTES;
  }

  private launchDownload(run: HeldRunDetail): void {
    const controller = new AbortController();
    const entry: ActiveDownload = { controller, bytes: 0, total: run.sizeBytes, startedAt: Date.now(), task: Promise.resolve() };
    this.downloads.set(run.run, entry);
    this.emit('download', run.run, `Downloading run: ${run.run}`);
    entry.task = downloadRun(this.context, this.archive!, run, controller.signal, {
      onProgress: (bytes, total) => {
        entry.bytes = bytes;
        entry.total = total ?? entry.total;
        this.publish();
      },
      onRetry: (attempt, error, delay) => this.emit('warning', run.run, `Download of run ${run.run} failed (try ${attempt}): ${error}; retrying in ${delay}s`),
    })
      .then((outcome) => {
        switch (outcome.kind) {
          case 'staged':
            this.downloadFault = null;
            this.clearAlert('archive-failing', 'INFO: The archive answers again; downloads go on.');
            this.clearAlert('staging-failing', 'INFO: The staging area takes files again; downloads go on.');
            this.emit('download', run.run, `... Success! (run ${run.run}, ${outcome.bytes} bytes)`);
            break;
          case 'infrastructure':
            void this.afterInfrastructureFault(run.run, outcome.where, outcome.error);
            break;
          case 'returned':
            this.emit('warning', run.run, `Download of run ${run.run} failed, returned to the pool: ${outcome.error}`);
            break;
          case 'failed':
            this.emit('fail', run.run, `Failed run: ${run.run} (download: ${outcome.error})`);
            break;
          case 'auth-failed':
            this.archiveBlocked = `archive refused the credentials: ${outcome.error}`;
            this.setAlert('archive-auth', `Archive authentication failed; no new downloads until fixed and restarted: ${outcome.error}`);
            break;
          case 'lost-ownership':
            this.emit('warning', run.run, `WARNING: run ${run.run} is no longer held by this session`);
            break;
          case 'aborted':
            break;
        }
      })
      .catch((error: unknown) => {
        if (!this.aborting) this.emit('error', run.run, `Download of run ${run.run} failed: ${(error as Error).message}`);
      })
      .finally(() => {
        this.downloads.delete(run.run);
        this.requestTick();
      });
  }

  /**
   * A download failed through no fault of its run: no attempt was counted and the run stays
   * `downloading`. Downloads pause with a banner and back off; after autoPause.infrastructure such
   * failures in a row the production pauses itself, so that no session keeps hammering a dead archive.
   */
  private async afterInfrastructureFault(run: number, where: FaultStreak['where'], error: string): Promise<void> {
    this.downloadFault = withFault(this.downloadFault, where, error);
    this.emit('warning', run, `Download of run ${run} failed, not the run's fault (${where}): ${error}`);
    this.setAlert(where === 'archive' ? 'archive-failing' : 'staging-failing', describeFault(this.downloadFault));
    const limit = this.production.config.autoPause.infrastructure ?? DEFAULT_INFRASTRUCTURE_FAILURES;
    if (this.downloadFault.count < limit || this.production.status !== 'active') return;
    const what = where === 'archive' ? 'the archive cannot be read' : 'the staging area cannot be written';
    const reason = `${what}: ${this.downloadFault.count} downloads in a row failed (${error})`;
    try {
      const paused = await pauseForInfrastructure(this.db, this.production, this.context.actor, reason);
      if (paused) {
        this.production = await refreshProductionState(this.db, this.production);
        this.setAlert('production-paused', `Production paused automatically: ${paused}`);
      }
    } catch (failure) {
      if (!isDatabaseUnavailable(failure)) throw failure;
    }
  }

  // --- submissions --------------------------------------------------------------------------

  /**
   * Submits staged runs; true when it submitted any. Downloads finishing meanwhile
   * only add staged runs, which the pass they wake up submits.
   */
  private async submit(): Promise<boolean> {
    if (!this.canStartWork()) return false;
    const onGrid = this.held.filter((r) => r.status === 'submitted' || r.status === 'running').length;
    const staged = this.held.filter((r) => r.status === 'staged').slice(0, Math.max(this.options.nproc - onGrid, 0));
    let submitted = false;
    for (const run of staged) {
      // The pass's scheduler budget is used up: the other staged runs are submitted next pass.
      if (Date.now() > this.passDeadline) break;
      this.heartbeat?.progress(`submitting run ${run.run} to ${this.grid.backend}`);
      const job = await this.prepareOrFail(run);
      if (job === 'disk-fault') return submitted;
      if (job === 'failed') continue;
      this.emit('submit', run.run, `Submitting run: ${run.run}`);
      let jobId: string;
      try {
        jobId = await this.grid.submit(job);
        this.clearAlert('backend-failing', `INFO: The ${this.grid.backend} backend answers again.`);
      } catch (error) {
        if (!(error instanceof GridUnavailableError)) throw error;
        this.setAlert('backend-failing', `${this.grid.backend} backend failing: ${error.message}`);
        return submitted; // the run stays staged; tried again next loop
      }
      submitted = true;
      crashPointForTests('submitted');
      const moved = await transitionRuns(this.db, {
        productionId: this.production.id,
        runs: [{ run: run.run, jobId, jobToken: job.release.token }],
        from: 'staged',
        to: 'submitted',
        owner: this.sessionId,
        actor: this.context.actor,
        message: `submitted to ${this.grid.backend} as ${jobId}, attempt ${run.attempts + 1}`,
      });
      if (moved.length === 0) {
        // We lost the run between preparing and recording: the job was never released, cancel it.
        await this.grid.cancel([jobId]);
        this.emit('warning', run.run, `WARNING: run ${run.run} was taken over; cancelled job ${jobId}`);
        continue;
      }
      // Recorded: now it may run. Killed before this line, the job is released by whoever adopts the run.
      crashPointForTests('recorded');
      await releaseJob(job.release);
    }
    return submitted;
  }

  /**
   * One run's job could not be prepared (its dataset's output directory cannot be made): that
   * attempt fails, the other runs and their jobs go on. A full or read-only output disk is no run's
   * fault: submissions pause with a banner until it takes files again.
   */
  private async prepareOrFail(run: HeldRunDetail): Promise<Awaited<ReturnType<typeof prepareJob>> | 'failed' | 'disk-fault'> {
    try {
      const job = await prepareJob(this.context, run, this.modulesFile);
      this.clearAlert('outputs-failing', 'INFO: The output area takes files again; submissions go on.');
      return job;
    } catch (error) {
      if (isDatabaseUnavailable(error)) throw error;
      const disk = diskFault(error);
      if (disk) {
        this.setAlert('outputs-failing', `Output area not writable: ${disk}; no new submissions, no attempt counted`);
        return 'disk-fault';
      }
      const outcome = await failAttemptBeforeSubmit(this.context, run, (error as Error).message);
      this.reportOutcomes([outcome]);
      return 'failed';
    }
  }

  // --- ending -------------------------------------------------------------------------------

  private async checkDone(): Promise<void> {
    if (this.aborting || this.stopped) return;
    const holding = this.held.length + this.downloads.size;
    if (this.draining && holding === 0) return this.stop(0, 'drained');
    if (holding > 0) return;
    if (this.options.limit !== null && this.claimsMade >= this.options.limit) return this.stop(0, `limit of ${this.options.limit} runs reached`);
    const claimable = !this.claimingPaused && this.production.status === 'active';
    if (this.options.until === 'idle' && claimable && (await this.nothingLeftToClaim())) return this.stop(0, 'nothing left to claim');
    if (this.options.until === 'done') {
      const open = this.runsNotDone();
      if (open === 0 && (await this.nothingLeftToClaim())) return this.stop(0, 'production done: every run finished or failed');
      this.sayWhyNotDone(open);
    }
  }

  /**
   * Runs of our selection that are neither finished nor failed, from the counters this pass read:
   * held by any session (this one holds none here), or new. New runs of a child production whose
   * parent run failed can never be claimed: nothingLeftToClaim tells those apart.
   */
  private runsNotDone(): number {
    const counts = this.base?.counts;
    if (!counts) return Infinity;
    const selected = this.options.datasets.length ? this.options.datasets.map((d) => counts.datasets[d]).filter((c) => c !== undefined) : [counts.counts];
    return selected.reduce((sum, c) => sum + HELD_STATUSES.reduce((n, status) => n + c[status], 0), 0);
  }

  private notDoneSaid = '';

  /** Once per change: what --until-done still waits for. */
  private sayWhyNotDone(heldElsewhere: number): void {
    const why =
      this.production.status !== 'active'
        ? `production ${this.production.status}${this.production.statusReason ? ` (${this.production.statusReason})` : ''}; waiting for resume`
        : heldElsewhere > 0
          ? `${heldElsewhere} run(s) held by other sessions; waiting for them to finish, or to be reaped and adopted`
          : this.claimingPaused
            ? 'claiming paused with p'
            : 'runs waiting on their parent runs';
    if (why === this.notDoneSaid) return;
    this.notDoneSaid = why;
    this.emit('info', null, `INFO: Not done yet: ${why}`);
  }

  /** No run of ours to claim now, nor any that waits on a parent run still in production. */
  private async nothingLeftToClaim(): Promise<boolean> {
    const datasets = this.options.datasets.length ? this.options.datasets : null;
    const parent = this.production.parentId;
    const row = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM (
        SELECT 1 FROM production_runs AS r
         WHERE r.production_id = ${this.production.id} AND r.is_new
           AND (${datasets}::text[] IS NULL OR r.dataset = ANY(${datasets}::text[]))
           AND (${parent}::int IS NULL OR EXISTS (
                 SELECT 1 FROM production_runs AS p
                  WHERE p.production_id = ${parent}::int AND p.run_number = r.run_number AND p.status <> 'failed'))
         LIMIT 1) AS left_to_claim`.execute(this.db);
    return row.rows[0]!.n === 0;
  }

  private async stop(exitCode: number, reason: string): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.heartbeat?.stop();
    // Reaped (or released) since the last heartbeat: the runs this pass saw done were another
    // session's doing from then on, and this one must not report success.
    if (!(await endSession(this.db, this.sessionId, this.context.actor, reason)) && (await sessionEnded(this.db, this.sessionId))) return this.leaveFenced();
    await this.archive?.close();
    this.emit('info', null, `INFO: Session ${this.sessionId.slice(0, 8)} ended: ${reason}`);
    this.finish({ exitCode, reason });
  }

  /** Our lease expired and another session reaped us: leave without touching runs or jobs (they may be adopted). */
  private async fencedOut(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.heartbeat?.stop();
    await this.leaveFenced();
  }

  private async leaveFenced(): Promise<void> {
    for (const download of this.downloads.values()) download.controller.abort();
    await Promise.allSettled([...this.downloads.values()].map((d) => d.task));
    for (const run of this.held) {
      if (run.status === 'claimed' || run.status === 'downloading' || run.status === 'staged') await removeStagedInput(this.production, run.stagedPath);
    }
    this.emit(
      'error',
      null,
      'ERROR: This session lost its lease: another session reaped it (no heartbeat for longer than --lease), or an operator released it; ' +
        'its runs were returned to the pool or adopted. Exiting without touching them.',
    );
    this.finish({ exitCode: 1, reason: 'lease lost' });
  }

  /** d / q / SIGUSR1: stop claiming, return runs not yet on the grid, wait for the jobs, exit 0. */
  drain(): void {
    if (this.draining || this.aborting || this.stopped) return;
    this.draining = true;
    this.setAlert('draining', 'Draining: no new claims; staged runs returned; waiting for submitted jobs to finish');
    void this.returnUnsubmitted().finally(() => this.requestTick());
  }

  private async returnUnsubmitted(): Promise<void> {
    for (const download of this.downloads.values()) download.controller.abort();
    await Promise.allSettled([...this.downloads.values()].map((d) => d.task));
    await this.ticking?.catch(() => undefined);
    await this.loadHeld();
    const notOnGrid = this.held.filter((r) => r.status === 'claimed' || r.status === 'downloading' || r.status === 'staged');
    const returned = await this.returnRuns(notOnGrid, 'drained: returned before submission');
    if (returned.length) this.emit('rollback', null, `Returning runs: [${returned.join(', ')}]`);
  }

  togglePauseClaiming(): void {
    this.claimingPaused = !this.claimingPaused;
    this.emit('info', null, this.claimingPaused ? 'INFO: Claiming paused for this session (p to resume)' : 'INFO: Claiming resumed');
    this.requestTick();
  }

  /**
   * Returns held runs to `new` in one transaction (not counted as attempts) and
   * deletes their transient files. The runs are re-read under row locks inside
   * the transaction, so a run that changed status since it was last looked at
   * (a pass still under way) is returned from the status it is in now, and
   * never left held by a session that is about to end.
   */
  private async returnRuns(runs: HeldRunDetail[], message: string): Promise<number[]> {
    return (await this.returnRunsWithJobs(runs, message)).returned;
  }

  /** returnRuns, also telling the job ids the returned runs had on the grid as seen under the lock. */
  private async returnRunsWithJobs(runs: HeldRunDetail[], message: string): Promise<{ returned: number[]; jobIds: string[] }> {
    const wanted = runs.map((r) => r.run);
    const { returned, current, jobIds } = await this.db.transaction().execute(async (tx) => {
      const locked = await tx
        .selectFrom('production_runs')
        .select(['run_number', 'status', 'job_id'])
        .where('session_id', '=', this.sessionId)
        .where('run_number', 'in', wanted.length ? wanted : [-1])
        .forUpdate()
        .execute();
      const returned = await returnRunsToPool(tx, {
        productionId: this.production.id,
        runs: locked.map((r) => ({ run: r.run_number, status: r.status })),
        owner: this.sessionId,
        actor: this.context.actor,
        message,
      });
      const onGrid = locked.filter((r) => (r.status === 'submitted' || r.status === 'running') && r.job_id && returned.includes(r.run_number));
      return { returned, current: new Map(locked.map((r) => [r.run_number, r.status])), jobIds: onGrid.map((r) => r.job_id!) };
    });
    // Files of the runs as they were when returned (a job submitted meanwhile has outputs to remove too).
    await this.removeTransientFiles(runs.filter((r) => returned.includes(r.run)).map((r) => ({ ...r, status: (current.get(r.run) as HeldStatus | undefined) ?? r.status })));
    return { returned, jobIds };
  }

  private async removeTransientFiles(runs: HeldRunDetail[]): Promise<void> {
    for (const run of runs) {
      if (run.stagedPath && isInStaging(this.production, run.stagedPath)) {
        await rm(run.stagedPath, { force: true });
        await rm(partialDownloadPath(run.stagedPath, this.sessionId, run.attempts + 1), { force: true });
      }
      if (run.status === 'submitted' || run.status === 'running') await removeAttemptFiles(this.context, run);
    }
  }

  /**
   * Ctrl-C, SIGTERM, SIGHUP or an uncaught error: stop claiming, cancel every
   * job of this session, return its unfinished runs to `new` in one
   * transaction, delete their transient files, end the session.
   */
  abort(reason: AbortReason, error?: unknown): Promise<void> {
    if (this.abortInProgress) {
      // A second Ctrl-C is answered; errors during the abort (a terminal gone with SIGHUP) are not,
      // or writing the answer to that terminal would raise the next one.
      if (reason !== 'error') this.emit('warning', null, 'The rollback is still running; please wait.');
      return this.abortInProgress;
    }
    if (this.stopped) return Promise.resolve();
    this.aborting = true;
    this.abortInProgress = this.performAbort(reason, error);
    return this.abortInProgress;
  }

  private async performAbort(reason: AbortReason, error?: unknown): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (error) this.emit('error', null, `ERROR: ${(error as Error)?.stack ?? String(error)}`);
    this.emit('rollback', null, `Aborting (${reason}): rolling back this session's runs`);
    this.abortState = { reason, cancelledJobs: [], rolledBackRuns: [], done: false, note: null };
    for (const download of this.downloads.values()) download.controller.abort();
    // A scheduler command that hangs must not hold up the rollback: the pass's commands are killed
    // (an interrupted submission's job is gated and never released, so it never runs).
    abortInFlightCommands();
    await Promise.allSettled([...this.downloads.values()].map((d) => d.task));
    // Let a pass that is under way finish its database work, so no new job appears after the cancel.
    await Promise.race([this.ticking?.catch(() => undefined), new Promise((r) => setTimeout(r, 15_000))]);
    let databaseDown = false;
    let runs = this.held;
    try {
      await this.loadHeld();
      runs = this.held;
    } catch {
      databaseDown = true;
    }
    const jobIds = runs.filter((r) => (r.status === 'submitted' || r.status === 'running') && r.jobId).map((r) => r.jobId!);
    for (const jobId of jobIds) {
      this.emit('rollback', null, `Cancelling job ${jobId}`);
      this.abortState.cancelledJobs.push(jobId);
    }
    if (jobIds.length) await this.grid.cancel(jobIds).catch((e: unknown) => this.emit('error', null, `ERROR: cancelling jobs failed: ${(e as Error).message}`));
    if (!databaseDown) {
      try {
        const first = await this.returnRunsWithJobs(runs, `aborted (${reason})`);
        this.abortState.rolledBackRuns = first.returned;
        this.emit('rollback', null, `Aborting runs: [${first.returned.join(', ')}]`);
        // A run that a pass still under way moved in the meantime is returned too, and a job
        // submitted in the meantime is cancelled too.
        await this.loadHeld();
        const late = await this.returnRunsWithJobs(this.held, `aborted (${reason})`);
        if (late.returned.length) {
          this.abortState.rolledBackRuns.push(...late.returned);
          this.emit('rollback', null, `Aborting runs: [${late.returned.join(', ')}]`);
        }
        const missed = [...first.jobIds, ...late.jobIds].filter((id) => !this.abortState!.cancelledJobs.includes(id));
        for (const jobId of missed) {
          this.emit('rollback', null, `Cancelling job ${jobId}`);
          this.abortState.cancelledJobs.push(jobId);
        }
        if (missed.length) await this.grid.cancel(missed).catch((e: unknown) => this.emit('error', null, `ERROR: cancelling jobs failed: ${(e as Error).message}`));
        await endSession(this.db, this.sessionId, this.context.actor, `aborted (${reason})`);
      } catch {
        databaseDown = true;
      }
    }
    if (databaseDown) {
      await this.removeTransientFiles(runs);
      const note =
        `The database cannot be reached: the jobs were cancelled, and the runs of session ${this.sessionId.slice(0, 8)} ` +
        `(${runs.map((r) => r.run).join(', ') || 'none'}) return to new when its lease expires (${this.options.leaseSeconds}s) ` +
        'and another session or `run-production sessions --reap` reaps it.';
      this.abortState.note = note;
      this.emit('error', null, note);
    }
    this.heartbeat?.stop();
    await this.archive?.close().catch(() => undefined);
    this.abortState.done = true;
    this.stopped = true;
    this.publish();
    this.finish({ exitCode: ABORT_EXIT[reason], reason: `aborted (${reason})` });
  }

  private abortState: NonNullable<Snapshot['abort']> | null = null;

  // --- snapshot -----------------------------------------------------------------------------

  private async buildSnapshot(): Promise<void> {
    const base = await readSnapshotBase(this.db, this.production.id, this.sessionId);
    const { runsPerHour, etaSeconds } = throughputOf(base);
    this.base = {
      counts: base.counts,
      runsPerHour,
      etaSeconds,
      sessions: base.sessions.map((s) => ({
        id: s.id,
        user: s.user_name,
        host: s.host,
        startedAt: s.started_at.getTime(),
        heartbeatAgeSeconds: Math.round(s.age),
        stale: s.age > s.lease_seconds,
        runsHeld: s.held,
      })),
    };
    this.publish();
  }

  private base: {
    counts: ProductionCounts;
    runsPerHour: number;
    etaSeconds: number | null;
    sessions: Snapshot['sessions'];
  } | null = null;

  private publish(): void {
    if (!this.base) return;
    const now = Date.now();
    const order: Record<HeldStatus, number> = { running: 0, submitted: 1, downloading: 2, staged: 3, claimed: 4 };
    const runs = [...this.held]
      .sort((a, b) => order[a.status] - order[b.status] || a.run - b.run)
      .map((r) => {
        const download = this.downloads.get(r.run);
        const seconds = download ? (now - download.startedAt) / 1000 : 0;
        return {
          run: r.run,
          dataset: r.dataset,
          status: r.status,
          attempt: r.attempts + 1,
          jobId: r.jobId,
          since: r.statusChangedAt.getTime(),
          download: download ? { bytes: download.bytes, total: download.total, bytesPerSecond: seconds > 0 ? download.bytes / seconds : 0 } : null,
        };
      });
    const onGrid = this.held.filter((r) => r.status === 'submitted' || r.status === 'running').length;
    const counts = this.base.counts.counts;
    this.snapshot = {
      at: now,
      production: {
        id: this.production.id,
        type: this.production.type,
        version: this.production.version,
        tag: this.production.tag,
        status: this.production.status,
        statusReason: this.production.statusReason,
        statusSince: this.production.statusChangedAt.getTime(),
        maxRunning: this.production.maxRunning,
      },
      database: this.who.databaseLabel,
      session: {
        id: this.sessionId,
        user: this.who.user,
        host: this.who.host,
        startedAt: this.startedAt,
        nextTickAt: this.nextTickAt,
        leaseSeconds: this.options.leaseSeconds,
        claimingPaused: this.claimingPaused,
        draining: this.draining,
        claimsLeft: this.options.limit === null ? null : Math.max(this.options.limit - this.claimsMade, 0),
      },
      counts,
      datasets: this.base.counts.datasets,
      total: this.base.counts.total,
      waitingOnParent: null,
      throughput: { runsPerHour: this.base.runsPerHour, etaSeconds: this.base.etaSeconds },
      limits: {
        running: onGrid,
        nproc: this.options.nproc,
        staged: this.held.filter((r) => r.status === 'staged' || r.status === 'downloading').length,
        nprep: this.options.nprep,
        productionRunning: counts.submitted + counts.running,
        maxRunning: this.production.maxRunning,
        disk: { usedPercent: this.space?.usedPercent ?? null, spacelim: this.options.spacelim, source: this.space?.source ?? 'statfs' },
        downloadsPausedReason: this.downloadsPausedReason,
      },
      runs,
      sessions: this.base.sessions,
      events: [...this.events],
      alerts: [...this.alerts.values()],
      abort: this.abortState ? { ...this.abortState, cancelledJobs: [...this.abortState.cancelledJobs] } : null,
      keysEnabled: this.who.keysEnabled,
    };
    for (const listener of this.listeners) listener();
  }
}
