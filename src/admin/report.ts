import { sql, type Kysely } from 'kysely';
import type { Production } from '../state/productions.js';
import type { Database } from '../db/schema.js';
import { readWrapperStatus } from '../grids/wrapper.js';
import { statusFilePath } from '../outputs/paths.js';

/**
 * The close-out report of a production, from the bookkeeping views of
 * sql/002_bookkeeping.sql (reading the event columns of sql/010_structured_events.sql).
 * Plain data here; src/cli/render-report.ts draws it.
 */

export interface DatasetLine {
  dataset: string;
  total: number;
  finished: number;
  failed: number;
  percentFinished: number;
}

export interface FailureGroup {
  /** The exit code, host or dataset; null: job lost (exit code) or host not known. */
  key: string | number | null;
  attempts: number;
  runs: number[];
  runsFailedNow: number[];
  lastError: string | null;
}

export interface OperatorLine {
  user: string;
  sessions: number;
  onlineSeconds: number;
  runsClaimed: number;
  runsFinished: number;
  jobsFailed: number;
  runsRolledBack: number;
}

export interface Report {
  production: {
    type: string;
    version: number;
    tag: string;
    status: string;
    statusReason: string | null;
    createdBy: string;
    startedAt: string;
    stoppedAt: string | null;
    maxAttempts: number;
  };
  runs: { requested: number; finished: number; failed: number; remaining: number; percentFinished: number };
  datasets: DatasetLine[];
  jobs: { run: number; finished: number; failed: number; exitZero: number; exitZeroPercent: number | null; successPercent: number | null };
  failures: { byExitCode: FailureGroup[]; byHost: FailureGroup[]; byDataset: FailureGroup[] };
  data: { inputBytes: number; outputBytes: number };
  time: { firstClaim: string | null; firstFinish: string | null; lastFinish: string | null; spanSeconds: number | null; runsPerHour: number | null };
  operators: OperatorLine[];
}

interface SummaryRow {
  dataset: string | null;
  runs_total: number;
  runs_finished: number;
  runs_failed: number;
  percent_finished: number;
  jobs_run: number;
  jobs_finished: number;
  jobs_exit_zero: number;
  attempt_success_percent: number | null;
  exit_zero_percent: number | null;
  input_bytes: number;
  output_bytes: number;
  first_finish: Date | null;
  last_finish: Date | null;
  runs_per_hour: number | null;
}

/** The rows of the views a report is made of, read at once. */
function readReportRows(db: Kysely<Database>, production: Production) {
  return Promise.all([
    sql<SummaryRow>`SELECT * FROM production_summary WHERE production_id = ${production.id} ORDER BY dataset NULLS FIRST`.execute(db),
    sql<{ grouped_by: string; exit_code: number | null; dataset: string | null; failed_attempts: number; runs: number[]; runs_failed_now: number[] | null; last_error: string | null }>`
      SELECT grouped_by, exit_code, dataset, failed_attempts, runs, runs_failed_now, last_error
        FROM failures WHERE production_id = ${production.id} AND grouped_by IN ('exit_code', 'dataset')
       ORDER BY failed_attempts DESC, exit_code NULLS LAST, dataset`.execute(db),
    sql<{ event_id: number; run_number: number; attempt: number | null; host: string | null; error: string | null; run_status_now: string }>`
      SELECT event_id, run_number, attempt, host, error, run_status_now::text AS run_status_now
        FROM failed_attempts WHERE production_id = ${production.id} ORDER BY event_id`.execute(db),
    sql<{ user_name: string; sessions: number; online_seconds: number | null; runs_claimed: number; runs_finished: number; jobs_failed: number; runs_rolled_back: number }>`
      SELECT user_name, sessions, extract(epoch FROM online)::float8 AS online_seconds, runs_claimed, runs_finished, jobs_failed, runs_rolled_back
        FROM operator_activity WHERE production_id = ${production.id} AND session_id IS NULL
       ORDER BY runs_finished DESC, user_name`.execute(db),
    sql<{ first_claim: Date | null }>`
      SELECT min(at) AS first_claim FROM events
       WHERE production_id = ${production.id} AND kind = 'transition' AND to_status = 'claimed'`.execute(db),
  ]);
}

export async function buildReport(db: Kysely<Database>, production: Production): Promise<Report> {
  const [summary, failures, attempts, operators, span] = await readReportRows(db, production);
  const all = summary.rows.find((r) => r.dataset === null);
  const firstClaim = span.rows[0]?.first_claim ?? null;
  const lastFinish = all?.last_finish ?? null;
  const group = (by: string): FailureGroup[] =>
    failures.rows
      .filter((r) => r.grouped_by === by)
      .map((r) => ({
        key: by === 'exit_code' ? r.exit_code : r.dataset,
        attempts: r.failed_attempts,
        runs: r.runs,
        runsFailedNow: r.runs_failed_now ?? [],
        lastError: r.last_error,
      }));
  return {
    production: {
      type: production.type,
      version: production.version,
      tag: production.tag,
      status: production.status,
      statusReason: production.statusReason,
      createdBy: production.createdBy,
      startedAt: production.startedAt.toISOString(),
      stoppedAt: production.stoppedAt?.toISOString() ?? null,
      maxAttempts: production.maxAttempts,
    },
    runs: {
      requested: all?.runs_total ?? 0,
      finished: all?.runs_finished ?? 0,
      failed: all?.runs_failed ?? 0,
      remaining: (all?.runs_total ?? 0) - (all?.runs_finished ?? 0) - (all?.runs_failed ?? 0),
      percentFinished: all?.percent_finished ?? 0,
    },
    datasets: summary.rows
      .filter((r): r is SummaryRow & { dataset: string } => r.dataset !== null)
      .map((r) => ({ dataset: r.dataset, total: r.runs_total, finished: r.runs_finished, failed: r.runs_failed, percentFinished: r.percent_finished })),
    jobs: {
      run: all?.jobs_run ?? 0,
      finished: all?.jobs_finished ?? 0,
      failed: (all?.jobs_run ?? 0) - (all?.jobs_finished ?? 0),
      exitZero: all?.jobs_exit_zero ?? 0,
      exitZeroPercent: all?.exit_zero_percent ?? null,
      successPercent: all?.attempt_success_percent ?? null,
    },
    failures: { byExitCode: group('exit_code'), byHost: await groupByHost(production, attempts.rows), byDataset: group('dataset') },
    data: { inputBytes: all?.input_bytes ?? 0, outputBytes: all?.output_bytes ?? 0 },
    time: {
      firstClaim: firstClaim?.toISOString() ?? null,
      firstFinish: all?.first_finish?.toISOString() ?? null,
      lastFinish: lastFinish?.toISOString() ?? null,
      spanSeconds: firstClaim && lastFinish ? Math.round((lastFinish.getTime() - firstClaim.getTime()) / 1000) : null,
      runsPerHour: all?.runs_per_hour ?? null,
    },
    operators: operators.rows.map((r) => ({
      user: r.user_name,
      sessions: r.sessions,
      onlineSeconds: Math.round(r.online_seconds ?? 0),
      runsClaimed: r.runs_claimed,
      runsFinished: r.runs_finished,
      jobsFailed: r.jobs_failed,
      runsRolledBack: r.runs_rolled_back,
    })),
  };
}

/**
 * Failures per host. The events know the host when the move recorded it
 * (events.host) or the job id carries it (local grid); otherwise the job
 * wrapper's status file of the attempt, kept next to the job's logs, still says
 * where it ran.
 */
async function groupByHost(
  production: Production,
  attempts: readonly { event_id: number; run_number: number; attempt: number | null; host: string | null; error: string | null; run_status_now: string }[],
): Promise<FailureGroup[]> {
  const groups = new Map<string | null, FailureGroup & { lastEvent: number }>();
  for (const a of attempts) {
    let host = a.host;
    if (host === null && a.attempt !== null) {
      const path = statusFilePath(production.config, { type: production.type, version: production.version, run: a.run_number }, a.attempt);
      host = (await readWrapperStatus(path).catch(() => undefined))?.host ?? null;
    }
    const g = groups.get(host) ?? { key: host, attempts: 0, runs: [], runsFailedNow: [], lastError: null, lastEvent: 0 };
    g.attempts += 1;
    if (!g.runs.includes(a.run_number)) g.runs.push(a.run_number);
    if (a.run_status_now === 'failed' && !g.runsFailedNow.includes(a.run_number)) g.runsFailedNow.push(a.run_number);
    if (a.event_id > g.lastEvent) {
      g.lastEvent = a.event_id;
      g.lastError = a.error;
    }
    groups.set(host, g);
  }
  return [...groups.values()]
    .sort((a, b) => b.attempts - a.attempts)
    .map(({ lastEvent: _lastEvent, ...g }) => ({ ...g, runs: g.runs.sort((x, y) => x - y), runsFailedNow: g.runsFailedNow.sort((x, y) => x - y) }));
}
