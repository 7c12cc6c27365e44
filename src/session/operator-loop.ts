import { isDatabaseUnavailable, type DatabaseHandle } from '../db/connection.js';
import { abortInFlightCommands } from '../grids/command.js';
import type { Grid } from '../grids/grid.js';
import { createGrid } from '../grids/index.js';
import { readHeldRuns, type HeldRunDetail } from '../state/held-runs.js';
import { refreshProductionState, requireIntactConfig, type Production } from '../state/productions.js';
import { endSession, sessionEnded } from '../state/sessions.js';
import { afterClaim, claimNewRuns } from './claim-stage.js';
import type { JobContext } from './context.js';
import { DownloadSupervisor } from './download-stage.js';
import type { SessionHeartbeat } from './heartbeat.js';
import { Journal } from './journal.js';
import { judgeJobs } from './judge-stage.js';
import { lostLeaseLine } from './messages.js';
import { ABORT_EXIT, type AbortReason, type LoopOptions, type LoopResult } from './options.js';
import { PassTimer } from './pass-timer.js';
import { whetherDone } from './end-stage.js';
import { passesRun, type Lifecycle } from './lifecycle.js';
import { planClaim, planSubmissions, type PlanInput } from './plan.js';
import { removeUnsubmittedInputs, returnUnsubmitted, rollBackSession } from './rollback.js';
import { commandTimeoutSeconds, openSession, reapOthers, watchSession, type SessionWho } from './session-start.js';
import { SnapshotPublisher } from './publisher.js';
import { productionPart, readSnapshotPart } from './snapshot-read.js';
import { buildSnapshot, type LoopLine, type Snapshot, type SnapshotAbort, type SnapshotParts, type SnapshotSource } from './snapshot.js';
import type { Stage } from './stage.js';
import { submitStaged } from './submit-stage.js';

export type { AbortReason, LoopOptions, LoopResult } from './options.js';

/**
 * The operator loop: every --pause seconds, and at once when a download or a job ends, it reaps
 * expired sessions, judges this session's ended jobs, claims runs up to nproc + nprep, starts
 * downloads (at most nprep staged ahead, while the staging area is below --spacelim) and submits
 * staged runs while fewer than nproc of its jobs are on the grid. What to do is decided by plan.ts;
 * each stage is a file of its own. It publishes a snapshot for a display and a line per event for
 * the plain log; it knows no screen.
 */

/** What exists once the session row does. */
interface Started {
  id: string;
  grid: Grid;
  heartbeat: SessionHeartbeat;
  modulesFile: string;
}

export class OperatorLoop implements SnapshotSource {
  private production: Production;
  private lifecycle: Lifecycle = { phase: 'starting' };
  private started: Started | null = null;
  private readonly journal = new Journal(() => this.publish());
  private readonly downloads = new DownloadSupervisor(() => this.timer.request(), () => this.publish(), () => this.lifecycle.phase === 'aborting');
  private readonly timer: PassTimer;
  private held: HeldRunDetail[] = [];
  private claimsMade = 0;
  private claimingPaused = false;
  private base: SnapshotParts['base'] | null = null;
  private readonly snapshots = new SnapshotPublisher();
  private abortState: SnapshotAbort | null = null;
  private notDoneSaid = '';
  private readonly startedAt = Date.now();
  private finish!: (result: LoopResult) => void;
  private readonly finished = new Promise<LoopResult>((resolve) => (this.finish = resolve));

  constructor(
    private readonly handle: DatabaseHandle,
    production: Production,
    private readonly options: LoopOptions,
    private readonly who: SessionWho,
  ) {
    this.production = production;
    this.timer = new PassTimer(options.pauseSeconds * 1000, {
      active: () => passesRun(this.lifecycle),
      pass: () => this.pass(),
      failed: (error) => {
        if (!isDatabaseUnavailable(error)) return this.abort('error', error);
        // An outage, not a bug: keep the jobs, stop starting work after half the lease, try again next pass.
        this.databaseUnreachable(error as Error);
      },
      ended: () => this.started?.heartbeat.passEnded(),
      scheduled: () => this.publish(),
    });
  }

  // --- what a display or the plain log sees -------------------------------------------------

  onLine(listener: (line: LoopLine) => void): () => void {
    return this.journal.onLine(listener);
  }

  getSnapshot(): Snapshot {
    return this.snapshots.getSnapshot();
  }

  subscribe(listener: () => void): () => void {
    return this.snapshots.subscribe(listener);
  }

  /** The session's id ('' until the session row exists). */
  get id(): string {
    return this.started?.id ?? '';
  }

  /** Resolves once the first snapshot is published (a display can start then). */
  ready(): Promise<void> {
    return this.snapshots.ready;
  }

  // --- life cycle ---------------------------------------------------------------------------

  /** Creates the session; resolves when the loop ends (done, drained, limit reached, aborted). */
  async run(): Promise<LoopResult> {
    requireIntactConfig(this.production);
    const grid = await createGrid(this.production.config.job, { onJobExit: () => this.requestTick() });
    const { id, modulesFile } = await openSession(this.handle.db, this.production, this.options, this.who, this.journal);
    const heartbeat = watchSession(this.handle.db, id, this.production, this.options, this.journal, {
      fenced: () => void this.fencedOut(),
      unreachable: (error) => this.databaseUnreachable(error),
    });
    this.started = { id, grid, heartbeat, modulesFile };
    if (this.lifecycle.phase !== 'starting') {
      // Aborted while the session was being created: its rollback may have found no session yet.
      await (this.lifecycle.phase === 'aborting' ? this.lifecycle.rollback : undefined);
      heartbeat.stop();
      await endSession(this.handle.db, id, this.job.actor, 'aborted while starting').catch(() => undefined);
      return this.finished;
    }
    this.lifecycle = { phase: 'running' };
    // The database may go away just after the session row is written: that is an outage to ride
    // out like any other, and the first snapshot then comes from the first pass that reaches it.
    await this.readBase().catch((error: unknown) => {
      if (!isDatabaseUnavailable(error)) throw error;
      this.databaseUnreachable(error as Error);
    });
    this.requestTick();
    return this.finished;
  }

  /** Run a pass now (or right after the current one). */
  requestTick(): void {
    this.timer.request();
  }

  private get session(): Started {
    if (!this.started) throw new Error('the session has not started');
    return this.started;
  }

  private get job(): JobContext {
    return { db: this.handle.db, production: this.production, actor: { user: this.who.user, sessionId: this.session.id } };
  }

  private get stage(): Stage {
    const { grid, heartbeat } = this.session;
    return { job: this.job, grid, options: this.options, journal: this.journal, heartbeat, autoPaused: (reason) => this.autoPaused(reason) };
  }

  private planInput(): PlanInput<HeldRunDetail> {
    const mayStartWork = this.lifecycle.phase === 'running' && !this.session.heartbeat.degraded && this.production.status === 'active';
    return { held: this.held, downloading: this.downloads.runs, options: this.options, claimsMade: this.claimsMade, mayStartWork };
  }

  private async loadHeld(): Promise<void> {
    this.held = await readHeldRuns(this.handle.db, this.session.id);
  }

  /**
   * One pass, in order: reap, re-read the production, judge ended jobs, claim, download, submit,
   * read the counts, decide whether done. The heartbeat runs on its own timer; a pass only reports
   * its progress to the watchdog and keeps its scheduler commands within a budget.
   */
  private async pass(): Promise<void> {
    const { heartbeat, grid } = this.session;
    heartbeat.passStarted('reaping expired sessions');
    const deadline = Date.now() + this.schedulerBudgetMs();
    if (!heartbeat.degraded) await reapOthers(this.stage);
    heartbeat.progress('reading the production');
    await this.refreshProduction();
    await this.loadHeld();
    heartbeat.progress(`polling the ${grid.backend} jobs`);
    if (await judgeJobs(this.stage, this.held, deadline)) await this.loadHeld();
    heartbeat.progress('claiming');
    const claimed = await claimNewRuns(this.stage, planClaim(this.planInput(), this.claimingPaused));
    this.claimsMade += claimed.length;
    if (claimed.length) {
      await this.loadHeld();
      if (await afterClaim(this.stage, this.held, claimed)) await this.loadHeld();
    }
    heartbeat.progress('starting downloads');
    const downloading = this.lifecycle.phase === 'running' && (await this.downloads.start(this.stage, this.planInput()));
    heartbeat.progress('submitting');
    const submitted = await submitStaged(this.stage, planSubmissions(this.planInput()), this.session.modulesFile, deadline);
    if (submitted || downloading) await this.loadHeld();
    heartbeat.progress('reading the counts');
    await this.readBase();
    await this.checkDone();
  }

  /**
   * Scheduler commands of one pass (the poll's per-job lookups, one sbatch per free slot) stop
   * once this much time is used, and go on next pass: a scheduler answering slowly makes passes
   * longer, never endless. Half a lease, and at least one command's timeout.
   */
  private schedulerBudgetMs(): number {
    return Math.max(commandTimeoutSeconds(this.production), this.options.leaseSeconds / 2) * 1000;
  }

  /** The production as others may have changed it (paused, limits). */
  private async refreshProduction(): Promise<void> {
    const wasActive = this.production.status === 'active';
    this.production = await refreshProductionState(this.handle.db, this.production);
    if (this.production.status !== 'active') {
      const { status, statusReason } = this.production;
      this.journal.setAlert('production-paused', `Production ${status}${statusReason ? `: ${statusReason}` : ''}`);
    } else {
      if (!wasActive) this.downloads.forgetFaults();
      this.journal.clearAlert('production-paused', 'INFO: Production active again.');
    }
  }

  private async autoPaused(reason: string): Promise<void> {
    this.production = await refreshProductionState(this.handle.db, this.production);
    this.journal.setAlert('production-paused', `Production paused automatically: ${reason}`);
  }

  private databaseUnreachable(error: Error): void {
    const heartbeat = this.started?.heartbeat;
    const stopped = heartbeat?.degraded ? '; not claiming or submitting' : '';
    this.journal.setAlert('database-unreachable', `Database unreachable for ${Math.round(heartbeat?.silentSeconds ?? 0)}s (${error.message.split('\n')[0]})${stopped}`);
    this.publish();
  }

  // --- ending -------------------------------------------------------------------------------

  private async checkDone(): Promise<void> {
    if (!passesRun(this.lifecycle)) return;
    const done = await whetherDone(this.stage, {
      holding: this.held.length + this.downloads.runs.size,
      draining: this.lifecycle.phase === 'draining',
      options: this.options,
      claimsMade: this.claimsMade,
      claimingPaused: this.claimingPaused,
      production: this.production,
      counts: this.base?.counts ?? null,
    });
    if (done.kind === 'stop') return this.stop(0, done.reason);
    if (done.notDone === null || done.notDone === this.notDoneSaid) return;
    this.notDoneSaid = done.notDone;
    this.journal.emit('info', null, `INFO: Not done yet: ${done.notDone}`);
  }

  private async stop(exitCode: number, reason: string): Promise<void> {
    if (this.lifecycle.phase === 'stopped') return;
    this.lifecycle = { phase: 'stopped', rollback: null };
    this.timer.cancel();
    const { heartbeat, id } = this.session;
    heartbeat.stop();
    // Reaped (or released) since the last heartbeat: the runs this pass saw done were another
    // session's doing from then on, and this one must not report success.
    if (!(await endSession(this.handle.db, id, this.job.actor, reason)) && (await sessionEnded(this.handle.db, id))) return this.leaveFenced();
    await this.downloads.close();
    this.journal.emit('info', null, `INFO: Session ${id.slice(0, 8)} ended: ${reason}`);
    this.finish({ exitCode, reason });
  }

  /** Our lease expired and another session reaped us: leave without touching runs or jobs (they may be adopted). */
  private async fencedOut(): Promise<void> {
    if (this.lifecycle.phase === 'stopped') return;
    this.lifecycle = { phase: 'stopped', rollback: null };
    this.timer.cancel();
    this.session.heartbeat.stop();
    await this.leaveFenced();
  }

  private async leaveFenced(): Promise<void> {
    await this.downloads.stopAll();
    await removeUnsubmittedInputs(this.job, this.held);
    this.journal.emit(lostLeaseLine.kind, lostLeaseLine.run, lostLeaseLine.text);
    this.finish({ exitCode: 1, reason: 'lease lost' });
  }

  /** d / q / SIGUSR1: stop claiming, return runs not yet on the grid, wait for the jobs, exit 0. */
  drain(): void {
    if (this.lifecycle.phase !== 'running') return;
    this.lifecycle = { phase: 'draining' };
    this.journal.setAlert('draining', 'Draining: no new claims; staged runs returned; waiting for submitted jobs to finish');
    void (async () => {
      await this.downloads.stopAll();
      await this.timer.running;
      await this.loadHeld();
      const returned = await returnUnsubmitted(this.job, this.held);
      if (returned.length) this.journal.emit('rollback', null, `Returning runs: [${returned.join(', ')}]`);
    })().finally(() => this.requestTick());
  }

  togglePauseClaiming(): void {
    this.claimingPaused = !this.claimingPaused;
    this.journal.emit('info', null, this.claimingPaused ? 'INFO: Claiming paused for this session (p to resume)' : 'INFO: Claiming resumed');
    this.requestTick();
  }

  /**
   * Ctrl-C, SIGTERM, SIGHUP or an uncaught error: stop claiming, cancel every
   * job of this session, return its unfinished runs to `new` in one
   * transaction, delete their transient files, end the session.
   */
  abort(reason: AbortReason, error?: unknown): Promise<void> {
    const { lifecycle } = this;
    const underWay = lifecycle.phase === 'aborting' || lifecycle.phase === 'stopped' ? lifecycle.rollback : null;
    if (underWay) {
      // A second Ctrl-C is answered; errors during the abort (a terminal gone with SIGHUP) are not,
      // or writing the answer to that terminal would raise the next one.
      if (reason !== 'error') this.journal.emit('warning', null, 'The rollback is still running; please wait.');
      return underWay;
    }
    if (lifecycle.phase === 'stopped') return Promise.resolve();
    // Started on the next tick, so that the lifecycle says `aborting` before any of it runs.
    const rollback = Promise.resolve().then(() => this.performAbort(reason, error));
    this.lifecycle = { phase: 'aborting', rollback };
    return rollback;
  }

  private async performAbort(reason: AbortReason, error?: unknown): Promise<void> {
    this.timer.cancel();
    if (error) this.journal.emit('error', null, `ERROR: ${(error as Error)?.stack ?? String(error)}`);
    this.journal.emit('rollback', null, `Aborting (${reason}): rolling back this session's runs`);
    const state: SnapshotAbort = { reason, cancelledJobs: [], rolledBackRuns: [], done: false, note: null };
    this.abortState = state;
    // A scheduler command that hangs must not hold up the rollback: the pass's commands are killed
    // (an interrupted submission's job is gated and never released, so it never runs).
    const stopping = this.downloads.stopAll();
    abortInFlightCommands();
    await stopping;
    // Let a pass that is under way finish its database work, so no new job appears after the cancel.
    await Promise.race([this.timer.running, new Promise((r) => setTimeout(r, 15_000))]);
    if (this.started) {
      await rollBackSession(
        { job: this.job, grid: this.started.grid, journal: this.journal, readHeld: () => readHeldRuns(this.handle.db, this.session.id), leaseSeconds: this.options.leaseSeconds },
        reason,
        this.held,
        state,
      );
      this.started.heartbeat.stop();
    }
    await this.downloads.close().catch(() => undefined);
    state.done = true;
    if (this.lifecycle.phase === 'aborting') this.lifecycle = { phase: 'stopped', rollback: this.lifecycle.rollback };
    this.publish();
    this.finish({ exitCode: ABORT_EXIT[reason], reason: `aborted (${reason})` });
  }

  // --- snapshot -----------------------------------------------------------------------------

  private async readBase(): Promise<void> {
    this.base = await readSnapshotPart(this.handle.db, this.production, this.session.id);
    this.publish();
  }

  private publish(): void {
    if (!this.base || !this.started) return;
    const { production, options, who } = this;
    this.snapshots.publish(buildSnapshot({
      now: Date.now(),
      production: productionPart(production),
      database: who.databaseLabel,
      session: {
        id: this.started.id,
        user: who.user,
        host: who.host,
        startedAt: this.startedAt,
        nextTickAt: this.timer.nextAt,
        leaseSeconds: options.leaseSeconds,
        claimingPaused: this.claimingPaused,
        draining: this.lifecycle.phase === 'draining',
        claimsLeft: options.limit === null ? null : Math.max(options.limit - this.claimsMade, 0),
      },
      base: this.base,
      held: this.held,
      downloads: this.downloads.inFlight,
      options,
      disk: this.downloads.disk,
      downloadsPausedReason: this.downloads.pausedReason,
      events: this.journal.recentEvents(),
      alerts: this.journal.currentAlerts(),
      abort: this.abortState,
      keysEnabled: who.keysEnabled,
    }));
  }
}
