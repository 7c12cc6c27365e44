-- 001_foundation: the shared bookkeeping through which several shifters' sessions coordinate.
-- Applied by `run-production db migrate` (and by every command first), inside one transaction.

CREATE TYPE run_status AS ENUM
  ('new', 'claimed', 'downloading', 'staged', 'submitted', 'running', 'finished', 'failed');
COMMENT ON TYPE run_status IS
  'Life of a run in a production: new (N) -> claimed (C) -> downloading -> staged -> submitted -> running (R) -> finished (F), or failed once retries are exhausted.';

CREATE TYPE production_status AS ENUM ('active', 'paused', 'closed');
COMMENT ON TYPE production_status IS 'active: sessions claim and submit; paused: nobody claims or submits, running jobs go on; closed: done.';

-- ---------------------------------------------------------------------------
CREATE TABLE runs (
  run_number  integer PRIMARY KEY,
  dataset     text    NOT NULL,
  quality     text    NOT NULL,
  size_bytes  bigint  CHECK (size_bytes IS NULL OR size_bytes >= 0),
  checksum    text,
  source      text,
  imported_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE runs IS 'The experiment''s run catalogue, imported with `run-production datasets import FILE.csv`.';
COMMENT ON COLUMN runs.run_number IS 'Run number as the DAQ assigned it.';
COMMENT ON COLUMN runs.dataset IS 'Dataset the run belongs to (e.g. SiR2, Al50b).';
COMMENT ON COLUMN runs.quality IS 'Data quality flag (gold, silver, ...); `new --quality` selects on it.';
COMMENT ON COLUMN runs.size_bytes IS 'Size of the raw input file in bytes, when the catalogue knows it; downloads are checked against it.';
COMMENT ON COLUMN runs.checksum IS 'Checksum of the raw input file (md5:HEX, sha1:HEX, sha256:HEX, or bare hex), when known; downloads are checked against it.';
COMMENT ON COLUMN runs.source IS 'Explicit location of the raw input file; overrides the production type''s input.source template.';
COMMENT ON COLUMN runs.imported_at IS 'When the row was imported or last updated.';
CREATE INDEX runs_dataset_idx ON runs (dataset, quality);

-- ---------------------------------------------------------------------------
CREATE TABLE productions (
  id             serial PRIMARY KEY,
  type           text    NOT NULL,
  version        integer NOT NULL CHECK (version > 0),
  tag            text    NOT NULL,
  parent_id      integer REFERENCES productions (id),
  config         jsonb   NOT NULL,
  modules        text,
  max_attempts   integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
  max_running    integer CHECK (max_running IS NULL OR max_running > 0),
  status         production_status NOT NULL DEFAULT 'active',
  status_reason  text,
  status_changed_at timestamptz NOT NULL DEFAULT now(),
  datasets       text[],
  quality        text,
  created_by     text    NOT NULL,
  started_at     timestamptz NOT NULL DEFAULT now(),
  stopped_at     timestamptz,
  UNIQUE (type, version)
);
COMMENT ON TABLE productions IS 'One production: a version of a production type run over a set of runs with one frozen definition.';
COMMENT ON COLUMN productions.type IS 'Production type (alcapana, rootana, ...), a key of `types` in the config file.';
COMMENT ON COLUMN productions.version IS 'Version within the type: 1, 2, 3, ... (highest + 1 at `new`).';
COMMENT ON COLUMN productions.tag IS 'Software tag the jobs run with (exported to jobs as SOFTWARE_TAG).';
COMMENT ON COLUMN productions.parent_id IS 'Production whose outputs this one reads (rootana reads alcapana''s trees); NULL for a raw-data production.';
COMMENT ON COLUMN productions.config IS 'The type''s configuration, resolved to absolute paths and frozen at `new`: every shifter runs this identical definition.';
COMMENT ON COLUMN productions.modules IS 'The modules-file text frozen at `new`, given to jobs as MODULES_FILE.';
COMMENT ON COLUMN productions.max_attempts IS 'Job attempts per run before it is marked failed.';
COMMENT ON COLUMN productions.max_running IS 'Cap on runs in flight across all sessions (NULL: no cap); enforced when claiming and submitting.';
COMMENT ON COLUMN productions.status IS 'active, paused (nobody claims or submits) or closed.';
COMMENT ON COLUMN productions.status_reason IS 'Why it was paused or closed.';
COMMENT ON COLUMN productions.status_changed_at IS 'When status last changed.';
COMMENT ON COLUMN productions.datasets IS 'Datasets selected at `new` (NULL: all).';
COMMENT ON COLUMN productions.quality IS 'Quality selected at `new` (NULL: any).';
COMMENT ON COLUMN productions.created_by IS 'User who created the production.';
COMMENT ON COLUMN productions.started_at IS 'When the production was created.';
COMMENT ON COLUMN productions.stopped_at IS 'When it was closed.';

-- ---------------------------------------------------------------------------
CREATE TABLE sessions (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_name      text    NOT NULL,
  host           text    NOT NULL,
  pid            integer NOT NULL,
  production_id  integer REFERENCES productions (id),
  options        jsonb   NOT NULL DEFAULT '{}',
  lease_seconds  integer NOT NULL DEFAULT 60 CHECK (lease_seconds > 0),
  started_at     timestamptz NOT NULL DEFAULT now(),
  heartbeat_at   timestamptz NOT NULL DEFAULT now(),
  ended_at       timestamptz,
  end_reason     text
);
COMMENT ON TABLE sessions IS 'One running copy of run-production (one shifter''s terminal). Holds a lease renewed by its heartbeat.';
COMMENT ON COLUMN sessions.id IS 'Session id, shown on the display and in events.';
COMMENT ON COLUMN sessions.user_name IS 'Unix user who started the session.';
COMMENT ON COLUMN sessions.host IS 'Host the session runs on.';
COMMENT ON COLUMN sessions.pid IS 'Process id of the session on that host.';
COMMENT ON COLUMN sessions.production_id IS 'Production the session works on.';
COMMENT ON COLUMN sessions.options IS 'Options the session runs with: nproc, nprep, spacelim, datasets, limit, ...';
COMMENT ON COLUMN sessions.lease_seconds IS 'A session whose heartbeat is older than this is expired and may be reaped by any other session.';
COMMENT ON COLUMN sessions.started_at IS 'When the session started.';
COMMENT ON COLUMN sessions.heartbeat_at IS 'Last heartbeat (database clock).';
COMMENT ON COLUMN sessions.ended_at IS 'When the session ended (NULL while live).';
COMMENT ON COLUMN sessions.end_reason IS 'Why it ended: done, drained, SIGINT, lease expired (reaped by ...), error text.';
CREATE INDEX sessions_live_idx ON sessions (heartbeat_at) WHERE ended_at IS NULL;
CREATE INDEX sessions_production_idx ON sessions (production_id, started_at);

-- ---------------------------------------------------------------------------
CREATE TABLE production_runs (
  production_id  integer NOT NULL REFERENCES productions (id),
  run_number     integer NOT NULL REFERENCES runs (run_number),
  dataset        text    NOT NULL,
  status         run_status NOT NULL DEFAULT 'new',
  attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  claimed_by     text,
  session_id     uuid REFERENCES sessions (id),
  job_id         text,
  staged_path    text,
  staged_bytes   bigint,
  claimed_at     timestamptz,
  submitted_at   timestamptz,
  started_at     timestamptz,
  finished_at    timestamptz,
  status_changed_at timestamptz NOT NULL DEFAULT now(),
  exit_code      integer,
  outputs        jsonb,
  output_bytes   bigint,
  last_error     text,
  PRIMARY KEY (production_id, run_number),
  -- A held run has an owner; a run at rest has none. The state machine keeps this true.
  CONSTRAINT owner_matches_status CHECK (
    (status IN ('new', 'finished', 'failed')) = (session_id IS NULL)
  )
) WITH (fillfactor = 80);
COMMENT ON TABLE production_runs IS 'One row per (production, run). Its status changes only through the state machine, which writes an event for every change.';
COMMENT ON COLUMN production_runs.production_id IS 'The production.';
COMMENT ON COLUMN production_runs.run_number IS 'The run.';
COMMENT ON COLUMN production_runs.dataset IS 'The run''s dataset, copied from runs so claims and counts need no join.';
COMMENT ON COLUMN production_runs.status IS 'Current status (see type run_status).';
COMMENT ON COLUMN production_runs.attempts IS 'Job attempts used (finished or failed); an abort is not an attempt.';
COMMENT ON COLUMN production_runs.claimed_by IS 'User of the session holding the run, or who finished it.';
COMMENT ON COLUMN production_runs.session_id IS 'Session holding the run; NULL when new, finished or failed.';
COMMENT ON COLUMN production_runs.job_id IS 'Grid job id of the current or last attempt.';
COMMENT ON COLUMN production_runs.staged_path IS 'Where the input is staged (or the parent''s output for a child production).';
COMMENT ON COLUMN production_runs.staged_bytes IS 'Bytes of the staged input; counted against the staging area while held.';
COMMENT ON COLUMN production_runs.claimed_at IS 'When it was last claimed.';
COMMENT ON COLUMN production_runs.submitted_at IS 'When its job was last submitted.';
COMMENT ON COLUMN production_runs.started_at IS 'When its job was last seen running.';
COMMENT ON COLUMN production_runs.finished_at IS 'When it finished or failed.';
COMMENT ON COLUMN production_runs.status_changed_at IS 'When status last changed.';
COMMENT ON COLUMN production_runs.exit_code IS 'Exit code of the last job attempt.';
COMMENT ON COLUMN production_runs.outputs IS 'Output paths by name ({"tree": "/data/tree/v3/tree02091.root", ...}) of the finished run.';
COMMENT ON COLUMN production_runs.output_bytes IS 'Total bytes of the validated outputs.';
COMMENT ON COLUMN production_runs.last_error IS 'Last error: failed download, validation failure, last lines of the job''s error log.';
CREATE INDEX production_runs_claimable_idx ON production_runs (production_id, run_number) WHERE status = 'new';
CREATE INDEX production_runs_session_idx ON production_runs (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX production_runs_finished_idx ON production_runs (production_id, finished_at) WHERE status = 'finished';

-- ---------------------------------------------------------------------------
CREATE TABLE events (
  id             bigserial PRIMARY KEY,
  at             timestamptz NOT NULL DEFAULT clock_timestamp(),
  production_id  integer REFERENCES productions (id),
  run_number     integer,
  session_id     uuid,
  user_name      text NOT NULL,
  from_status    run_status,
  to_status      run_status,
  kind           text NOT NULL,
  message        text
);
COMMENT ON TABLE events IS 'Append-only log of every run state change and operator action.';
COMMENT ON COLUMN events.at IS 'When it happened.';
COMMENT ON COLUMN events.production_id IS 'Production concerned (NULL for actions on the catalogue).';
COMMENT ON COLUMN events.run_number IS 'Run concerned (NULL for production or session actions).';
COMMENT ON COLUMN events.session_id IS 'Session that acted (NULL for operator commands run outside a session).';
COMMENT ON COLUMN events.user_name IS 'User who acted.';
COMMENT ON COLUMN events.from_status IS 'Status before a transition.';
COMMENT ON COLUMN events.to_status IS 'Status after a transition.';
COMMENT ON COLUMN events.kind IS 'transition, adopt, session-start, session-end, reap, pause, resume, close, retry, import, new-production, ...';
COMMENT ON COLUMN events.message IS 'Human-readable detail: why, exit code, error line.';
CREATE INDEX events_run_idx ON events (production_id, run_number, id);
CREATE INDEX events_session_idx ON events (session_id, id);
CREATE INDEX events_at_idx ON events (at);

-- ---------------------------------------------------------------------------
-- The state machine: the only allowed moves. Checked in the same statement that moves runs.
CREATE TABLE run_status_transitions (
  from_status run_status NOT NULL,
  to_status   run_status NOT NULL,
  why         text NOT NULL,
  PRIMARY KEY (from_status, to_status)
);
COMMENT ON TABLE run_status_transitions IS 'Allowed run status changes; anything else is refused by the state machine.';
COMMENT ON COLUMN run_status_transitions.from_status IS 'Status before.';
COMMENT ON COLUMN run_status_transitions.to_status IS 'Status after.';
COMMENT ON COLUMN run_status_transitions.why IS 'When this move happens.';
INSERT INTO run_status_transitions (from_status, to_status, why) VALUES
  ('new',         'claimed',     'a session claims the run'),
  ('claimed',     'downloading', 'the input download starts'),
  ('claimed',     'staged',      'the input needs no download (child production reads the parent output in place)'),
  ('claimed',     'new',         'abort, drain or reap returns it'),
  ('downloading', 'staged',      'the input arrived and was verified'),
  ('downloading', 'new',         'download failed, abort or reap'),
  ('downloading', 'failed',      'the input is missing and attempts are exhausted'),
  ('staged',      'submitted',   'the job was submitted'),
  ('staged',      'new',         'abort, drain or reap returns it'),
  ('submitted',   'running',     'the job started'),
  ('submitted',   'finished',    'the job ended with valid outputs before it was seen running'),
  ('submitted',   'new',         'the job failed (attempt counted), or abort/reap'),
  ('submitted',   'failed',      'the job failed and attempts are exhausted'),
  ('running',     'finished',    'the job ended with valid outputs'),
  ('running',     'new',         'the job failed (attempt counted), or abort/reap'),
  ('running',     'failed',      'the job failed and attempts are exhausted'),
  ('failed',      'new',         'an operator retries it'),
  ('finished',    'new',         'validate --fix found its outputs damaged');

-- ---------------------------------------------------------------------------
-- Status counts, maintained in the same transaction as every change, so that `status` and the
-- display never GROUP BY the whole production. Each backend adds to one of 8 shards so that
-- concurrent sessions do not queue on one hot row; readers sum the shards.
CREATE TABLE production_status_counts (
  production_id integer  NOT NULL REFERENCES productions (id),
  dataset       text     NOT NULL,
  status        run_status NOT NULL,
  shard         smallint NOT NULL,
  n             bigint   NOT NULL,
  PRIMARY KEY (production_id, dataset, status, shard)
);
COMMENT ON TABLE production_status_counts IS 'Runs per (production, dataset, status), spread over shards; sum over shard for the count. Maintained by triggers on production_runs.';
COMMENT ON COLUMN production_status_counts.production_id IS 'The production.';
COMMENT ON COLUMN production_status_counts.dataset IS 'The dataset.';
COMMENT ON COLUMN production_status_counts.status IS 'The status.';
COMMENT ON COLUMN production_status_counts.shard IS 'Shard (backend pid mod 8) that wrote this part of the count.';
COMMENT ON COLUMN production_status_counts.n IS 'This shard''s share of the count (may be negative; the sum over shards is the count).';

CREATE FUNCTION production_status_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Deltas from the statement's transition tables: +1 for each new row, -1 for each old row.
  -- Ordered so that concurrent statements take the counter rows' locks in the same order.
  IF TG_OP = 'INSERT' THEN
    INSERT INTO production_status_counts AS c (production_id, dataset, status, shard, n)
    SELECT production_id, dataset, status, (pg_backend_pid() % 8)::smallint, count(*)
      FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (production_id, dataset, status, shard) DO UPDATE SET n = c.n + excluded.n;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO production_status_counts AS c (production_id, dataset, status, shard, n)
    SELECT production_id, dataset, status, (pg_backend_pid() % 8)::smallint, sum(delta)
      FROM (SELECT production_id, dataset, status, 1 AS delta FROM new_rows
            UNION ALL
            SELECT production_id, dataset, status, -1 FROM old_rows) AS d
     GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (production_id, dataset, status, shard) DO UPDATE SET n = c.n + excluded.n;
  ELSE
    INSERT INTO production_status_counts AS c (production_id, dataset, status, shard, n)
    SELECT production_id, dataset, status, (pg_backend_pid() % 8)::smallint, -count(*)
      FROM old_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (production_id, dataset, status, shard) DO UPDATE SET n = c.n + excluded.n;
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION production_status_counts_apply() IS 'Keeps production_status_counts equal to the runs per status, in the same transaction as the change.';

CREATE TRIGGER production_runs_counts_insert AFTER INSERT ON production_runs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION production_status_counts_apply();
CREATE TRIGGER production_runs_counts_update AFTER UPDATE ON production_runs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION production_status_counts_apply();
CREATE TRIGGER production_runs_counts_delete AFTER DELETE ON production_runs
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION production_status_counts_apply();

-- The hot tables churn: vacuum them early so that dead row versions do not pile up.
ALTER TABLE production_runs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE production_status_counts SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000, fillfactor = 50);
ALTER TABLE sessions SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 500, fillfactor = 50);
