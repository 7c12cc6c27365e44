-- 010_structured_events: why a run moved is a column, not a sentence.
--
-- Until now the reason for a move lived only in events.message ('attempt 2/3 failed on HOST: exit code
-- 7: ...', 'aborted (SIGINT)', 'returned: session ... reaped by ...'), and the bookkeeping views of
-- 002 read it back with regular expressions: a new wording of a message silently changed what the
-- views counted. From here on every event says why in `reason` (one of the codes of event_reasons),
-- and the numbers a view needs (attempt, job id, exit code, host, error line) are columns of their
-- own, written by the statement that writes the event (src/state/transition.ts). The message stays,
-- for people. Existing events are back-filled once, here, from their kinds and messages as the code
-- wrote them up to 009; after this migration no view reads a message.

-- ---------------------------------------------------------------------------------------------------
-- The codes. A CHECK on events.reason (made from this table below) refuses any other; the same list
-- is EVENT_REASONS in src/core/event-reasons.ts. A migration that adds a code inserts it here and
-- makes the CHECK again from the table.
CREATE TABLE event_reasons (
  code    text PRIMARY KEY,
  meaning text NOT NULL
);
COMMENT ON TABLE event_reasons IS 'The codes of events.reason and what each means. events.reason is checked against this list (constraint events_reason_known), not by a foreign key: a key check on every event would lock these few rows from every session.';
COMMENT ON COLUMN event_reasons.code IS 'The code, as written in events.reason.';
COMMENT ON COLUMN event_reasons.meaning IS 'When an event carries this code.';
INSERT INTO event_reasons (code, meaning) VALUES
  -- Moves of a run on its way through an attempt.
  ('claimed',             'new -> claimed: a session claimed the run.'),
  ('download_started',    'claimed -> downloading: the input download started; the staging reservation is taken.'),
  ('staged',              '-> staged: the input arrived and was verified, or a child production reads its parent run''s output in place.'),
  ('submitted',           'staged -> submitted: the job was submitted and recorded (job_id); only now may it run.'),
  ('started',             'submitted -> running: the scheduler says the job runs.'),
  ('finished',            '-> finished: the job ended with valid outputs; the attempt is counted.'),
  -- A failed attempt, counted against max_attempts: to_status new means attempts are left, failed that they are used up.
  ('retry',               'A job attempt failed (exit code, invalid outputs, lost job) and was counted; attempts are left: back to new.'),
  ('failed',              'A job attempt failed and was counted, and the attempts are used up: the run is failed.'),
  ('input_missing',       'The archive has no input for the run; counted as an attempt (to new, or failed once they are used up).'),
  ('download_failed',     'The input could not be downloaded intact (the same wrong size or checksum every try); counted as an attempt (to new or failed).'),
  ('prepare_failed',      'The job could not be prepared (an output directory that cannot be made, a full disk); counted as an attempt (to new or failed).'),
  -- Back to new without an attempt counted.
  ('rolled_back',         'Returned to new by its own session, no attempt counted: abort (Ctrl-C, SIGTERM, an error) or drain.'),
  ('reaped',              'Returned to new by a reaper (the holding session''s lease expired, or it ended still holding runs), no attempt counted; also the reap event itself.'),
  ('released',            'Returned to new by an operator''s release --force of the holding session, no attempt counted; also the release event itself.'),
  ('revoked',             'Its job was revoked by a reaper that could not reach it and was ended by its wrapper: back to new, redone as the same attempt.'),
  ('parent_missing',      'A child production''s run whose parent run has no recorded output: back to new, no attempt counted.'),
  ('archive_refused',     'The archive refused the session''s credentials: back to new, no attempt counted, for a session that can read it.'),
  -- Moved by an operator, or handed over.
  ('retried_by_operator', 'failed -> new by an operator''s retry (attempts reset, or the limit raised); also the retry event itself.'),
  ('validated_bad',       'finished -> new by validate --fix: the recorded outputs are damaged or gone; also the validate-fix event itself.'),
  ('adopted',             'A live session took over a dead session''s run, its status unchanged (kind adopt).'),
  -- Production and session actions.
  ('paused',              'An operator paused the production.'),
  ('auto_paused',         'The production paused itself: consecutive failed attempts, or an archive or staging disk that keeps failing.'),
  ('resumed',             'A paused production was resumed.'),
  ('reopened',            'A closed production was reopened (resume).'),
  ('closed',              'The production was closed.'),
  ('limits_changed',      'The production''s max-running changed.'),
  ('production_created',  'The production was created (new).'),
  ('catalogue_imported',  'The run catalogue was imported or updated (datasets import).'),
  ('session_started',     'A session started.'),
  ('session_ended',       'A session ended by itself (done, drained, aborted, an error).'),
  ('other',               'Only in events written before migration 010 whose kind and message fit none of the other codes.');

-- ---------------------------------------------------------------------------------------------------
-- The columns.
ALTER TABLE events
  ADD COLUMN reason    text,
  ADD COLUMN attempt   integer CONSTRAINT events_attempt_positive CHECK (attempt > 0),
  ADD COLUMN job_id    text,
  ADD COLUMN exit_code integer,
  ADD COLUMN host      text,
  ADD COLUMN error     text;
COMMENT ON COLUMN events.id IS 'Order of the log: a larger id was written later (visible once its transaction committed).';
COMMENT ON COLUMN events.reason IS 'Why: a code of event_reasons (claimed, retry, rolled_back, reaped, ...). The views count by it; message says the same for people.';
COMMENT ON COLUMN events.attempt IS 'The run''s attempt the move belongs to (1, 2, ...): for a move that counts an attempt, the attempt it used; otherwise the attempt under way (attempts + 1). NULL for moves from finished or failed and for actions. For events written before 010, only where the message said it (submission, end of a job) or the run''s last submission did (its job''s later moves).';
COMMENT ON COLUMN events.job_id IS 'Grid job id of the attempt, for the submission and for every later move of that job (started, finished, failed, returned); NULL otherwise.';
COMMENT ON COLUMN events.exit_code IS 'Exit code of the job whose end the move records, when it has one (0 for a job that exited 0 with invalid outputs; NULL for a lost job, and for a finished run written without one: finished means exit 0).';
COMMENT ON COLUMN events.host IS 'Host the job ran on, when the move recorded it (the wrapper''s status file says it); NULL otherwise.';
COMMENT ON COLUMN events.error IS 'First line of the error the move recorded as the run''s last_error (at most 300 characters): a failed attempt''s exit code and stderr line, a missing input, a parent without output ...; NULL when none.';
COMMENT ON COLUMN events.kind IS 'What sort of event: transition, adopt, session-start, session-end, reap, release, pause, resume, close, limits, retry, validate-fix, import, new-production. Why is in reason.';
COMMENT ON COLUMN events.message IS 'Human-readable detail: who, why, the error line. For people: no view reads it; the columns reason, attempt, job_id, exit_code, host and error hold what is counted.';

-- ---------------------------------------------------------------------------------------------------
-- Back-fill, once, from the kinds and messages as src/ wrote them up to 009 (src/state/transition.ts,
-- src/session/jobs.ts, download.ts, operator-loop.ts, src/state/sessions.ts, src/admin/*.ts).

-- The reason of an event written before 010.
CREATE FUNCTION pg_temp.legacy_reason(kind text, from_status run_status, to_status run_status, message text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE kind
    WHEN 'transition' THEN CASE
      WHEN to_status = 'claimed' THEN 'claimed'
      WHEN to_status = 'downloading' THEN 'download_started'
      WHEN to_status = 'staged' THEN 'staged'
      WHEN to_status = 'submitted' THEN 'submitted'
      WHEN to_status = 'running' THEN 'started'
      WHEN to_status = 'finished' THEN 'finished'
      WHEN from_status = 'failed' THEN 'retried_by_operator'
      WHEN from_status = 'finished' THEN 'validated_bad'
      -- 'attempt N/M failed[ on HOST]: ERROR' (a judged job, or from staged a job that could not be prepared)
      WHEN message ~ '^attempt \d+/\d+ failed' THEN CASE
        WHEN from_status = 'staged' THEN 'prepare_failed'
        WHEN to_status = 'failed' THEN 'failed'
        ELSE 'retry' END
      WHEN starts_with(message, 'input missing: ') THEN 'input_missing'
      WHEN message ~ '^download failed \d+ times: ' THEN 'download_failed'
      WHEN starts_with(message, 'archive refused the credentials: ') THEN 'archive_refused'
      WHEN starts_with(message, 'parent run has no recorded ') THEN 'parent_missing'
      WHEN message ~ '^job \S+ was revoked and ended by its wrapper' THEN 'revoked'
      WHEN starts_with(message, 'returned: released by ') THEN 'released'
      WHEN starts_with(message, 'returned: session ') THEN 'reaped'
      -- Anything else by the move alone, as the views of 002 read it: to failed is a used-up attempt,
      -- to new a return without an attempt counted ('aborted (SIGINT)', 'drained: ...').
      WHEN to_status = 'failed' THEN CASE from_status WHEN 'downloading' THEN 'download_failed' WHEN 'staged' THEN 'prepare_failed' ELSE 'failed' END
      ELSE 'rolled_back' END
    WHEN 'adopt' THEN 'adopted'
    WHEN 'pause' THEN CASE WHEN starts_with(message, 'auto-paused: ') THEN 'auto_paused' ELSE 'paused' END
    WHEN 'resume' THEN CASE WHEN starts_with(message, 'reopened ') THEN 'reopened' ELSE 'resumed' END
    WHEN 'close' THEN 'closed'
    WHEN 'limits' THEN 'limits_changed'
    WHEN 'retry' THEN 'retried_by_operator'
    WHEN 'validate-fix' THEN 'validated_bad'
    WHEN 'release' THEN 'released'
    WHEN 'reap' THEN 'reaped'
    WHEN 'session-start' THEN 'session_started'
    WHEN 'session-end' THEN 'session_ended'
    WHEN 'new-production' THEN 'production_created'
    WHEN 'import' THEN 'catalogue_imported'
    ELSE 'other' END
$$;

-- The error line an event written before 010 carried in its message (what the move wrote as last_error).
CREATE FUNCTION pg_temp.legacy_error(reason text, message text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT left(split_part(CASE
    WHEN reason IN ('retry', 'failed', 'prepare_failed') THEN regexp_replace(message, '^attempt \d+/\d+ failed(?: on [^ :]+)?: ', '')
    WHEN reason IN ('input_missing', 'download_failed', 'archive_refused', 'parent_missing') THEN message
    WHEN reason = 'revoked' THEN regexp_replace(message, '; not counted as an attempt, the run is redone$', '')
    WHEN reason = 'validated_bad' AND message ~ '^validate --fix by [^:]*: ' THEN 'validate: ' || regexp_replace(message, '^validate --fix by [^:]*: ', '')
  END, E'\n', 1), 300)
$$;

-- The events are append-only for everybody (sql/009): this one rewrite is the migration's, in its own
-- transaction, so nobody can see or write the log with the trigger off.
ALTER TABLE events DISABLE TRIGGER events_append_only;

WITH legacy AS (
  SELECT e.id, r.reason,
         -- A submission says its job and attempt: 'submitted to BACKEND as JOB_ID, attempt N'. A later move
         -- of that job (started, its end, a return, an adoption) belongs to the run's latest submission before it.
         CASE WHEN e.kind = 'transition' AND e.to_status = 'submitted' THEN e.message END AS submission,
         (SELECT s.message FROM events AS s
           WHERE e.kind IN ('transition', 'adopt') AND e.from_status IN ('submitted', 'running')
             AND s.production_id = e.production_id AND s.run_number = e.run_number AND s.id < e.id
             AND s.kind = 'transition' AND s.to_status = 'submitted'
           ORDER BY s.id DESC LIMIT 1) AS earlier_submission
    FROM events AS e
   CROSS JOIN LATERAL (SELECT pg_temp.legacy_reason(e.kind, e.from_status, e.to_status, e.message) AS reason) AS r
)
UPDATE events AS e
   SET reason = l.reason,
       attempt = coalesce(
         substring(l.submission FROM ', attempt (\d+)$')::int,
         CASE WHEN l.reason = 'finished' THEN substring(e.message FROM '^finished[^,]*, attempt (\d+)')::int END,
         CASE WHEN l.reason IN ('retry', 'failed', 'prepare_failed') THEN substring(e.message FROM '^attempt (\d+)/\d+ failed')::int END,
         substring(l.earlier_submission FROM ', attempt (\d+)$')::int),
       job_id = coalesce(substring(l.submission FROM ' as (\S+), attempt \d+$'), substring(l.earlier_submission FROM ' as (\S+), attempt \d+$')),
       exit_code = CASE
         WHEN l.reason = 'finished' THEN 0
         WHEN l.reason IN ('retry', 'failed') THEN substring(e.message FROM '^attempt \d+/\d+ failed(?: on [^ :]+)?: exit (?:code )?(\d+)')::int END,
       host = CASE
         WHEN l.reason = 'finished' THEN substring(e.message FROM '^finished on ([^,]+),')
         WHEN l.reason IN ('retry', 'failed') THEN substring(e.message FROM '^attempt \d+/\d+ failed on ([^ :]+): ') END,
       error = CASE WHEN e.kind = 'transition' THEN pg_temp.legacy_error(l.reason, e.message) END
  FROM legacy AS l
 WHERE l.id = e.id;

ALTER TABLE events ENABLE TRIGGER events_append_only;
DROP FUNCTION pg_temp.legacy_reason(text, run_status, run_status, text);
DROP FUNCTION pg_temp.legacy_error(text, text);

-- Every event has a reason from now on, one of the codes. The CHECK is made from event_reasons, so that
-- the list is written once in SQL.
ALTER TABLE events ALTER COLUMN reason SET NOT NULL;
DO $$
BEGIN
  EXECUTE format('ALTER TABLE events ADD CONSTRAINT events_reason_known CHECK (reason = ANY (%L::text[]))',
                 (SELECT array_agg(code ORDER BY code) FROM event_reasons));
END $$;
COMMENT ON CONSTRAINT events_reason_known ON events IS 'events.reason is a code of event_reasons (made from that table by sql/010; a migration adding a code makes it again).';

-- ---------------------------------------------------------------------------------------------------
-- Indexes. The attempt outcomes are now the events with reason finished, retry or failed: the same
-- name, so auto-pause's backward scan of the last K per production keeps its index.
DROP INDEX events_attempt_outcomes_idx;
CREATE INDEX events_attempt_outcomes_idx ON events (production_id, id) WHERE reason IN ('finished', 'retry', 'failed');
COMMENT ON INDEX events_attempt_outcomes_idx IS 'Job attempt outcomes (reason finished, retry or failed) per production, newest last: auto-pause reads the last K.';

-- ---------------------------------------------------------------------------------------------------
-- The views of 002, reading the columns. Same columns, same answers, no message read; run_history
-- shows the new columns after its old ones.
CREATE OR REPLACE VIEW attempt_outcomes AS
SELECT e.id AS event_id, e.at, e.production_id, e.run_number, e.session_id, e.user_name, e.from_status, e.to_status,
       CASE WHEN e.reason = 'finished' THEN 'finished' ELSE 'failed' END AS outcome,
       e.attempt,
       CASE WHEN e.reason = 'finished' THEN 0 ELSE e.exit_code END AS exit_code,
       -- The local grid's job ids are local:HOST:PID: the host is known even when the move did not record it.
       coalesce(e.host, substring(e.job_id FROM '^local:(.+):\d+$')) AS host,
       e.job_id,
       CASE WHEN e.reason <> 'finished' THEN e.error END AS error
  FROM events AS e
 WHERE e.reason IN ('finished', 'retry', 'failed');
COMMENT ON VIEW attempt_outcomes IS
  'One row per ended job attempt: the events with reason finished, retry (failed, attempts left) or failed (attempts used up). Aborted, drained, reaped, released or revoked jobs are not attempts and are left out. Order by event_id.';
COMMENT ON COLUMN attempt_outcomes.attempt IS 'Attempt number of the run (1, 2, ...), events.attempt; restarts at 1 after a retry that reset attempts.';
COMMENT ON COLUMN attempt_outcomes.exit_code IS 'Exit code of the job (0 for finished, and for a job that exited 0 with invalid outputs); NULL when the job was lost.';
COMMENT ON COLUMN attempt_outcomes.host IS 'Host the job ran on: events.host, else the host in a local grid''s job id; NULL otherwise.';
COMMENT ON COLUMN attempt_outcomes.job_id IS 'Grid job id of the attempt (events.job_id).';
COMMENT ON COLUMN attempt_outcomes.error IS 'For a failure: the first line of the error (events.error: exit code and stderr line, invalid outputs, lost job).';

CREATE OR REPLACE VIEW run_history AS
SELECT e.id AS event_id, e.at, e.production_id, p.type, p.version, e.run_number, pr.dataset,
       row_number() OVER (PARTITION BY e.production_id, e.run_number ORDER BY e.id) AS step,
       e.kind, e.from_status, e.to_status, e.message, e.user_name, e.session_id, s.host AS session_host,
       e.reason, e.attempt, e.job_id, e.exit_code, e.host, e.error
  FROM events AS e
  JOIN productions AS p ON p.id = e.production_id
  LEFT JOIN production_runs AS pr ON pr.production_id = e.production_id AND pr.run_number = e.run_number
  LEFT JOIN sessions AS s ON s.id = e.session_id
 WHERE e.run_number IS NOT NULL;
COMMENT ON COLUMN run_history.message IS 'The event''s message, for people: who returned it, the error line.';
COMMENT ON COLUMN run_history.reason IS 'Why (events.reason, a code of event_reasons).';
COMMENT ON COLUMN run_history.attempt IS 'The attempt the event belongs to (events.attempt).';
COMMENT ON COLUMN run_history.job_id IS 'Grid job id of the attempt (events.job_id).';
COMMENT ON COLUMN run_history.exit_code IS 'Exit code of the job whose end the event records (events.exit_code).';
COMMENT ON COLUMN run_history.host IS 'Host the job ran on, when recorded (events.host).';
COMMENT ON COLUMN run_history.error IS 'First line of the error the event recorded (events.error).';

CREATE OR REPLACE VIEW operator_activity AS
WITH per_session AS (
  SELECT e.session_id,
         count(*) FILTER (WHERE e.to_status = 'claimed') AS runs_claimed,
         count(*) FILTER (WHERE e.to_status = 'finished') AS runs_finished,
         count(*) FILTER (WHERE e.reason IN ('retry', 'failed')) AS jobs_failed,
         count(*) FILTER (WHERE e.to_status = 'failed') AS runs_failed,
         -- Back to new from a held status without an attempt counted.
         count(*) FILTER (WHERE e.reason IN ('rolled_back', 'reaped', 'released', 'revoked', 'parent_missing', 'archive_refused')) AS runs_rolled_back
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
COMMENT ON COLUMN operator_activity.jobs_failed IS 'Job attempts that failed (reason retry or failed: counted against max_attempts).';
COMMENT ON COLUMN operator_activity.runs_rolled_back IS 'Runs returned to new without an attempt counted (reason rolled_back, reaped, released, revoked, parent_missing or archive_refused): abort (Ctrl-C), drain, reap of another session, a revoked job, missing parent output, refused credentials.';

-- ---------------------------------------------------------------------------------------------------
-- Ownership and grants (sql/009): the new table is the owner's and everybody reads it; whoever may
-- write events (shifters, and coordinators through them) names the new columns, never login.
ALTER TABLE event_reasons OWNER TO run_production_owner;
REVOKE ALL ON event_reasons FROM PUBLIC;
GRANT SELECT ON event_reasons TO run_production_reader;
GRANT INSERT (reason, attempt, job_id, exit_code, host, error) ON events TO run_production_shifter;
