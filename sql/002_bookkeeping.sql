-- 002_bookkeeping: views that answer a shifter's and a coordinator's usual questions without a join,
-- and the indexes they (and auto-pause) need. Everything here is derived from the tables of 001:
-- the events written by the state machine (transitionRuns) are the history; nothing new is stored.
--
-- How a job attempt shows up in events (see src/coordinator/jobs.ts judgeEndedJob):
--   success: transition submitted|running -> finished, message 'finished[ on HOST], attempt N, B bytes of output'
--   failure: transition submitted|running -> new|failed, message 'attempt N/M failed[ on HOST]: ERROR'
-- Transitions submitted|running -> new with any other message are aborts, drains, reaps and releases:
-- the job was cancelled, no attempt was counted. The submission records the job id:
--   transition staged -> submitted, message 'submitted to BACKEND as JOB_ID, attempt N'
-- The host of a failed attempt is not in its message today; it is taken from the job id when the
-- backend puts it there (local:HOST:PID), and from ' on HOST' should the message ever carry it.

-- ---------------------------------------------------------------------------
-- Indexes

-- Events of a production in order: `events --production`, --follow, and the report.
CREATE INDEX events_production_idx ON events (production_id, id);

-- Job attempt outcomes only: auto-pause reads the last K of them per production, newest first.
CREATE INDEX events_attempt_outcomes_idx ON events (production_id, id)
  WHERE kind = 'transition' AND from_status IN ('submitted', 'running') AND to_status IN ('new', 'failed', 'finished');

-- Operator and session actions (pause, resume, close, retry, release, session-start, ...): few rows,
-- so "the last resume of this production" is one index probe however many transitions there are.
CREATE INDEX events_actions_idx ON events (production_id, id) WHERE kind <> 'transition';

-- ---------------------------------------------------------------------------
CREATE VIEW attempt_outcomes AS
SELECT a.event_id, a.at, a.production_id, a.run_number, a.session_id, a.user_name, a.from_status, a.to_status,
       a.outcome, a.attempt,
       CASE WHEN a.outcome = 'finished' THEN 0
            ELSE substring(a.message FROM '^attempt \d+/\d+ failed(?: on [^ :]+)?: exit (?:code )?(\d+)')::int END AS exit_code,
       coalesce(substring(a.message FROM '^finished on ([^,]+),'),
                substring(a.message FROM '^attempt \d+/\d+ failed on ([^ :]+): '),
                substring(a.job_id FROM '^local:(.+):\d+$')) AS host,
       a.job_id,
       CASE WHEN a.outcome = 'failed' THEN regexp_replace(a.message, '^attempt \d+/\d+ failed(?: on [^ :]+)?: ', '') END AS error
  FROM (
    SELECT e.id AS event_id, e.at, e.production_id, e.run_number, e.session_id, e.user_name, e.from_status, e.to_status, e.message,
           CASE WHEN e.to_status = 'finished' THEN 'finished' ELSE 'failed' END AS outcome,
           substring(e.message FROM '^(?:finished[^,]*, )?attempt (\d+)')::int AS attempt,
           -- The job id of this attempt is in the latest submission event of the run before it.
           (SELECT substring(s.message FROM ' as (\S+), attempt \d+$')
              FROM events AS s
             WHERE s.production_id = e.production_id AND s.run_number = e.run_number AND s.id < e.id
               AND s.kind = 'transition' AND s.to_status = 'submitted'
             ORDER BY s.id DESC LIMIT 1) AS job_id
      FROM events AS e
     WHERE e.kind = 'transition'
       AND e.from_status IN ('submitted', 'running')
       AND e.to_status IN ('new', 'failed', 'finished')
       AND (e.to_status <> 'new' OR e.message ~ '^attempt \d+/\d+ failed')
  ) AS a;
COMMENT ON VIEW attempt_outcomes IS
  'One row per ended job attempt (finished, or failed with the attempt counted), read from the transition events; aborted, drained, reaped or released jobs are not attempts and are left out. Order by event_id.';
COMMENT ON COLUMN attempt_outcomes.event_id IS 'The transition event (events.id) that recorded the outcome.';
COMMENT ON COLUMN attempt_outcomes.at IS 'When the outcome was recorded.';
COMMENT ON COLUMN attempt_outcomes.production_id IS 'The production.';
COMMENT ON COLUMN attempt_outcomes.run_number IS 'The run.';
COMMENT ON COLUMN attempt_outcomes.session_id IS 'Session that judged the job.';
COMMENT ON COLUMN attempt_outcomes.user_name IS 'User of that session.';
COMMENT ON COLUMN attempt_outcomes.from_status IS 'submitted or running.';
COMMENT ON COLUMN attempt_outcomes.to_status IS 'finished; new (failed, attempts left) or failed (attempts exhausted).';
COMMENT ON COLUMN attempt_outcomes.outcome IS 'finished or failed.';
COMMENT ON COLUMN attempt_outcomes.attempt IS 'Attempt number of the run (1, 2, ...), as the loop recorded it; restarts at 1 after a retry that reset attempts.';
COMMENT ON COLUMN attempt_outcomes.exit_code IS 'Exit code of the job (0 for finished, and for a job that exited 0 with invalid outputs); NULL when the job was lost.';
COMMENT ON COLUMN attempt_outcomes.host IS 'Host the job ran on, when recorded (finished on HOST) or derivable from the job id (local grid); NULL otherwise.';
COMMENT ON COLUMN attempt_outcomes.job_id IS 'Grid job id of the attempt, from its submission event.';
COMMENT ON COLUMN attempt_outcomes.error IS 'For a failure: the first line of the error (exit code and stderr line, invalid outputs, lost job).';

-- ---------------------------------------------------------------------------
CREATE VIEW production_summary AS
WITH jobs AS (
  SELECT production_id, run_number, count(*) AS jobs_run,
         count(*) FILTER (WHERE outcome = 'finished') AS jobs_finished,
         count(*) FILTER (WHERE exit_code = 0) AS jobs_exit_zero
    FROM attempt_outcomes
   GROUP BY production_id, run_number
)
SELECT p.id AS production_id, p.type, p.version, p.tag, p.status AS production_status,
       pr.dataset,
       count(*) AS runs_total,
       count(*) FILTER (WHERE pr.status = 'new') AS runs_new,
       count(*) FILTER (WHERE pr.status = 'claimed') AS runs_claimed,
       count(*) FILTER (WHERE pr.status = 'downloading') AS runs_downloading,
       count(*) FILTER (WHERE pr.status = 'staged') AS runs_staged,
       count(*) FILTER (WHERE pr.status = 'submitted') AS runs_submitted,
       count(*) FILTER (WHERE pr.status = 'running') AS runs_running,
       count(*) FILTER (WHERE pr.status = 'finished') AS runs_finished,
       count(*) FILTER (WHERE pr.status = 'failed') AS runs_failed,
       round(100.0 * count(*) FILTER (WHERE pr.status = 'finished') / count(*), 1) AS percent_finished,
       coalesce(sum(j.jobs_run), 0)::bigint AS jobs_run,
       coalesce(sum(j.jobs_finished), 0)::bigint AS jobs_finished,
       coalesce(sum(j.jobs_exit_zero), 0)::bigint AS jobs_exit_zero,
       round(100.0 * sum(j.jobs_finished) / nullif(sum(j.jobs_run), 0), 1) AS attempt_success_percent,
       round(100.0 * sum(j.jobs_exit_zero) / nullif(sum(j.jobs_run), 0), 1) AS exit_zero_percent,
       sum(pr.attempts)::bigint AS attempts_used,
       coalesce(sum(coalesce(pr.staged_bytes, r.size_bytes)) FILTER (WHERE pr.status = 'finished'), 0)::bigint AS input_bytes,
       coalesce(sum(pr.output_bytes) FILTER (WHERE pr.status = 'finished'), 0)::bigint AS output_bytes,
       min(pr.finished_at) FILTER (WHERE pr.status = 'finished') AS first_finish,
       max(pr.finished_at) FILTER (WHERE pr.status = 'finished') AS last_finish,
       round((count(*) FILTER (WHERE pr.status = 'finished') /
              nullif(extract(epoch FROM max(pr.finished_at) FILTER (WHERE pr.status = 'finished')
                                      - min(pr.finished_at) FILTER (WHERE pr.status = 'finished')) / 3600, 0))::numeric, 1) AS runs_per_hour
  FROM productions AS p
  JOIN production_runs AS pr ON pr.production_id = p.id
  JOIN runs AS r ON r.run_number = pr.run_number
  LEFT JOIN jobs AS j ON j.production_id = pr.production_id AND j.run_number = pr.run_number
 GROUP BY p.id, p.type, p.version, p.tag, p.status, GROUPING SETS ((), (pr.dataset));
COMMENT ON VIEW production_summary IS
  'Progress and volumes per production, one row per dataset plus one row with dataset NULL for the whole production. Computed from the runs (exact, unlike the sharded counters); for reports, not for polling.';
COMMENT ON COLUMN production_summary.production_id IS 'The production.';
COMMENT ON COLUMN production_summary.type IS 'Production type.';
COMMENT ON COLUMN production_summary.version IS 'Production version.';
COMMENT ON COLUMN production_summary.tag IS 'Software tag.';
COMMENT ON COLUMN production_summary.production_status IS 'active, paused or closed.';
COMMENT ON COLUMN production_summary.dataset IS 'Dataset; NULL in the row that sums all datasets of the production.';
COMMENT ON COLUMN production_summary.runs_total IS 'Runs requested (rows of the production).';
COMMENT ON COLUMN production_summary.runs_new IS 'Runs waiting to be claimed.';
COMMENT ON COLUMN production_summary.runs_claimed IS 'Runs claimed, not yet downloading.';
COMMENT ON COLUMN production_summary.runs_downloading IS 'Runs whose input is being downloaded.';
COMMENT ON COLUMN production_summary.runs_staged IS 'Runs staged, waiting for submission.';
COMMENT ON COLUMN production_summary.runs_submitted IS 'Runs whose job is queued.';
COMMENT ON COLUMN production_summary.runs_running IS 'Runs whose job runs.';
COMMENT ON COLUMN production_summary.runs_finished IS 'Runs finished with valid outputs.';
COMMENT ON COLUMN production_summary.runs_failed IS 'Runs failed with their attempts used up (retry brings them back).';
COMMENT ON COLUMN production_summary.percent_finished IS '100 * runs_finished / runs_total.';
COMMENT ON COLUMN production_summary.jobs_run IS 'Job attempts that ended (finished or failed), over the whole history, retries included.';
COMMENT ON COLUMN production_summary.jobs_finished IS 'Job attempts that finished with valid outputs.';
COMMENT ON COLUMN production_summary.jobs_exit_zero IS 'Job attempts that exited 0 (finished, or exit 0 with invalid outputs).';
COMMENT ON COLUMN production_summary.attempt_success_percent IS '100 * jobs_finished / jobs_run; NULL before the first job ended.';
COMMENT ON COLUMN production_summary.exit_zero_percent IS 'Percentage of ended jobs that exited 0 (a job may exit 0 and still fail validation).';
COMMENT ON COLUMN production_summary.attempts_used IS 'Sum of production_runs.attempts now (reset by `retry` without --max-attempts).';
COMMENT ON COLUMN production_summary.input_bytes IS 'Input bytes of the finished runs (staged_bytes, else the catalogue size_bytes).';
COMMENT ON COLUMN production_summary.output_bytes IS 'Validated output bytes of the finished runs.';
COMMENT ON COLUMN production_summary.first_finish IS 'When the first run still finished now finished.';
COMMENT ON COLUMN production_summary.last_finish IS 'When the last finished run finished.';
COMMENT ON COLUMN production_summary.runs_per_hour IS 'Finished runs per hour between first_finish and last_finish; NULL with fewer than two distinct finish times.';

-- ---------------------------------------------------------------------------
CREATE VIEW run_history AS
SELECT e.id AS event_id, e.at, e.production_id, p.type, p.version, e.run_number, pr.dataset,
       row_number() OVER (PARTITION BY e.production_id, e.run_number ORDER BY e.id) AS step,
       e.kind, e.from_status, e.to_status, e.message, e.user_name, e.session_id, s.host AS session_host
  FROM events AS e
  JOIN productions AS p ON p.id = e.production_id
  LEFT JOIN production_runs AS pr ON pr.production_id = e.production_id AND pr.run_number = e.run_number
  LEFT JOIN sessions AS s ON s.id = e.session_id
 WHERE e.run_number IS NOT NULL;
COMMENT ON VIEW run_history IS
  'Every event of every run of a production (transitions, adoptions, operator actions on the run), with who did it; ORDER BY event_id (or step) for the run''s life in order.';
COMMENT ON COLUMN run_history.event_id IS 'events.id: the order in which things happened.';
COMMENT ON COLUMN run_history.at IS 'When it happened.';
COMMENT ON COLUMN run_history.production_id IS 'The production.';
COMMENT ON COLUMN run_history.type IS 'Production type.';
COMMENT ON COLUMN run_history.version IS 'Production version.';
COMMENT ON COLUMN run_history.run_number IS 'The run.';
COMMENT ON COLUMN run_history.dataset IS 'Dataset of the run.';
COMMENT ON COLUMN run_history.step IS '1 for the run''s first event in this production, 2 for the next, ...';
COMMENT ON COLUMN run_history.kind IS 'transition, adopt, or an operator action.';
COMMENT ON COLUMN run_history.from_status IS 'Status before a transition.';
COMMENT ON COLUMN run_history.to_status IS 'Status after a transition.';
COMMENT ON COLUMN run_history.message IS 'Why: job id, attempt, exit code and error line, who returned it.';
COMMENT ON COLUMN run_history.user_name IS 'User who acted.';
COMMENT ON COLUMN run_history.session_id IS 'Session that acted (NULL for an operator command outside a session).';
COMMENT ON COLUMN run_history.session_host IS 'Host of that session.';

-- ---------------------------------------------------------------------------
CREATE VIEW operator_activity AS
WITH per_session AS (
  SELECT e.session_id,
         count(*) FILTER (WHERE e.to_status = 'claimed') AS runs_claimed,
         count(*) FILTER (WHERE e.to_status = 'finished') AS runs_finished,
         count(*) FILTER (WHERE e.from_status IN ('submitted', 'running') AND e.to_status IN ('new', 'failed')
                                AND e.message ~ '^attempt \d+/\d+ failed') AS jobs_failed,
         count(*) FILTER (WHERE e.to_status = 'failed') AS runs_failed,
         -- Back to new from a held status without an attempt counted: abort, drain, reap, release,
         -- a failed download that will be retried, a child run whose parent output is missing.
         count(*) FILTER (WHERE e.to_status = 'new' AND e.from_status IN ('claimed', 'downloading', 'staged', 'submitted', 'running')
                                AND e.message !~ '^attempt \d+/\d+ failed' AND e.message !~ '^input missing: ') AS runs_rolled_back
    FROM events AS e
   WHERE e.kind = 'transition' AND e.session_id IS NOT NULL
   GROUP BY e.session_id
),
sessions_of AS (
  SELECT s.production_id, s.user_name, s.id AS session_id, s.host, s.started_at, s.ended_at, s.end_reason,
         coalesce(s.ended_at, s.heartbeat_at) - s.started_at AS online,
         coalesce(a.runs_claimed, 0) AS runs_claimed, coalesce(a.runs_finished, 0) AS runs_finished,
         coalesce(a.jobs_failed, 0) AS jobs_failed, coalesce(a.runs_failed, 0) AS runs_failed,
         coalesce(a.runs_rolled_back, 0) AS runs_rolled_back
    FROM sessions AS s LEFT JOIN per_session AS a ON a.session_id = s.id
)
SELECT so.production_id, p.type, p.version, so.user_name, so.session_id, so.host,
       min(so.started_at) AS started_at,
       CASE WHEN bool_and(so.ended_at IS NOT NULL) THEN max(so.ended_at) END AS ended_at,
       CASE WHEN grouping(so.session_id) = 0 THEN max(so.end_reason) END AS end_reason,
       count(*) AS sessions,
       sum(so.online) AS online,
       sum(so.runs_claimed)::bigint AS runs_claimed,
       sum(so.runs_finished)::bigint AS runs_finished,
       sum(so.jobs_failed)::bigint AS jobs_failed,
       sum(so.runs_failed)::bigint AS runs_failed,
       sum(so.runs_rolled_back)::bigint AS runs_rolled_back
  FROM sessions_of AS so
  LEFT JOIN productions AS p ON p.id = so.production_id
 GROUP BY so.production_id, p.type, p.version, so.user_name, GROUPING SETS ((), (so.session_id, so.host));
COMMENT ON VIEW operator_activity IS
  'What each shifter''s sessions did per production: one row per session, plus one row per (production, user) with session_id NULL summing that user''s sessions. Counts are of what the session itself did (a reaper counts the runs it returned).';
COMMENT ON COLUMN operator_activity.production_id IS 'The production the session worked on.';
COMMENT ON COLUMN operator_activity.type IS 'Production type.';
COMMENT ON COLUMN operator_activity.version IS 'Production version.';
COMMENT ON COLUMN operator_activity.user_name IS 'Shifter.';
COMMENT ON COLUMN operator_activity.session_id IS 'The session; NULL in the per-user row.';
COMMENT ON COLUMN operator_activity.host IS 'Host the session ran on; NULL in the per-user row.';
COMMENT ON COLUMN operator_activity.started_at IS 'Start of the (first) session.';
COMMENT ON COLUMN operator_activity.ended_at IS 'End of the (last) session; NULL while a session is live.';
COMMENT ON COLUMN operator_activity.end_reason IS 'Why the session ended (done, drained, aborted (SIGINT), lease expired ...); NULL in the per-user row.';
COMMENT ON COLUMN operator_activity.sessions IS 'Sessions counted in the row (1 for a session row).';
COMMENT ON COLUMN operator_activity.online IS 'Time online: from start to end, or to the last heartbeat while live; summed over sessions.';
COMMENT ON COLUMN operator_activity.runs_claimed IS 'Claims made (a run claimed twice counts twice).';
COMMENT ON COLUMN operator_activity.runs_finished IS 'Runs whose job this session saw finish.';
COMMENT ON COLUMN operator_activity.jobs_failed IS 'Job attempts that failed (counted against max_attempts).';
COMMENT ON COLUMN operator_activity.runs_failed IS 'Runs this session marked failed (attempts used up).';
COMMENT ON COLUMN operator_activity.runs_rolled_back IS 'Runs returned to new without an attempt counted: abort (Ctrl-C), drain, reap of another session, missing parent output.';

-- ---------------------------------------------------------------------------
CREATE VIEW failed_attempts AS
SELECT o.event_id, o.at, o.production_id, p.type, p.version, o.run_number, pr.dataset, o.attempt, o.to_status,
       o.exit_code, o.host, o.job_id, o.error, o.user_name, o.session_id, pr.status AS run_status_now
  FROM attempt_outcomes AS o
  JOIN productions AS p ON p.id = o.production_id
  JOIN production_runs AS pr ON pr.production_id = o.production_id AND pr.run_number = o.run_number
 WHERE o.outcome = 'failed';
COMMENT ON VIEW failed_attempts IS 'One row per failed job attempt, with its exit code, host, job id and error line.';
COMMENT ON COLUMN failed_attempts.event_id IS 'The transition event that recorded the failure.';
COMMENT ON COLUMN failed_attempts.at IS 'When the failure was recorded.';
COMMENT ON COLUMN failed_attempts.production_id IS 'The production.';
COMMENT ON COLUMN failed_attempts.type IS 'Production type.';
COMMENT ON COLUMN failed_attempts.version IS 'Production version.';
COMMENT ON COLUMN failed_attempts.run_number IS 'The run.';
COMMENT ON COLUMN failed_attempts.dataset IS 'Dataset of the run.';
COMMENT ON COLUMN failed_attempts.attempt IS 'Attempt number.';
COMMENT ON COLUMN failed_attempts.to_status IS 'new (attempts were left) or failed (attempts used up).';
COMMENT ON COLUMN failed_attempts.exit_code IS 'Exit code; 0 when the job exited 0 with invalid outputs; NULL when the job was lost.';
COMMENT ON COLUMN failed_attempts.host IS 'Host of the job when known (see attempt_outcomes.host).';
COMMENT ON COLUMN failed_attempts.job_id IS 'Grid job id.';
COMMENT ON COLUMN failed_attempts.error IS 'First line of the error.';
COMMENT ON COLUMN failed_attempts.user_name IS 'User of the session that judged the job.';
COMMENT ON COLUMN failed_attempts.session_id IS 'That session.';
COMMENT ON COLUMN failed_attempts.run_status_now IS 'Status of the run now (a failed attempt may since have been retried and finished).';

CREATE VIEW failures AS
SELECT f.production_id, f.type, f.version,
       CASE WHEN grouping(f.exit_code) = 0 THEN 'exit_code' WHEN grouping(f.host) = 0 THEN 'host' ELSE 'dataset' END AS grouped_by,
       f.exit_code, f.host, f.dataset,
       count(*) AS failed_attempts,
       array_agg(DISTINCT f.run_number ORDER BY f.run_number) AS runs,
       array_agg(DISTINCT f.run_number ORDER BY f.run_number) FILTER (WHERE f.run_status_now = 'failed') AS runs_failed_now,
       min(f.at) AS first_at,
       max(f.at) AS last_at,
       (array_agg(f.error ORDER BY f.event_id DESC))[1] AS last_error
  FROM failed_attempts AS f
 GROUP BY f.production_id, f.type, f.version, GROUPING SETS ((f.exit_code), (f.host), (f.dataset));
COMMENT ON VIEW failures IS
  'Failed job attempts of each production grouped three ways: by exit code, by host, by dataset (column grouped_by says which; the other two keys are NULL). WHERE grouped_by = ''exit_code'' answers "what failed how often".';
COMMENT ON COLUMN failures.production_id IS 'The production.';
COMMENT ON COLUMN failures.type IS 'Production type.';
COMMENT ON COLUMN failures.version IS 'Production version.';
COMMENT ON COLUMN failures.grouped_by IS 'exit_code, host or dataset: which key this row groups by.';
COMMENT ON COLUMN failures.exit_code IS 'Exit code (grouped_by = exit_code); NULL there means the job was lost.';
COMMENT ON COLUMN failures.host IS 'Job host (grouped_by = host); NULL there means not recorded.';
COMMENT ON COLUMN failures.dataset IS 'Dataset (grouped_by = dataset).';
COMMENT ON COLUMN failures.failed_attempts IS 'Failed job attempts in the group.';
COMMENT ON COLUMN failures.runs IS 'Runs with at least one failed attempt in the group.';
COMMENT ON COLUMN failures.runs_failed_now IS 'Of those, the runs that are in status failed now (NULL: none).';
COMMENT ON COLUMN failures.first_at IS 'First failure in the group.';
COMMENT ON COLUMN failures.last_at IS 'Last failure in the group.';
COMMENT ON COLUMN failures.last_error IS 'Error line of the last failure in the group.';
