-- 006_hot_transitions: let a run's moves while it is held update its row in place.
--
-- PostgreSQL updates a row in place (a HOT update: no new entry in any index) only when no column
-- that an index mentions changes, and the columns in a partial index's WHERE count. Three partial
-- indexes said `WHERE status = ...`, so every transition put a new entry into the primary key, the
-- session index and one or two partial indexes; at 16 sessions index insertion was a third of the
-- server's time (perf, bench of issue 7).
--
-- Now no index mentions `status`. The partial indexes are on stored generated flags instead, which
-- only change when a run is claimed or comes to rest; claimed -> downloading -> staged -> submitted
-- -> running change neither the flags nor session_id, so those four moves of six are HOT.

ALTER TABLE production_runs
  ADD COLUMN is_new boolean GENERATED ALWAYS AS (status = 'new') STORED,
  ADD COLUMN is_finished boolean GENERATED ALWAYS AS (status = 'finished') STORED;
COMMENT ON COLUMN production_runs.is_new IS 'status = ''new'', kept by PostgreSQL: the predicate of the claimable index (an index on status itself would make every transition a non-HOT update).';
COMMENT ON COLUMN production_runs.is_finished IS 'status = ''finished'', kept by PostgreSQL: the predicate of the finished index.';

DROP INDEX production_runs_claimable_idx;
CREATE INDEX production_runs_claimable_idx ON production_runs (production_id, run_number) WHERE is_new;
COMMENT ON INDEX production_runs_claimable_idx IS 'New runs in run order: what claims walk. Queries must say `is_new` to use it.';

DROP INDEX production_runs_finished_idx;
CREATE INDEX production_runs_finished_idx ON production_runs (production_id, finished_at) WHERE is_finished;
COMMENT ON INDEX production_runs_finished_idx IS 'Finished runs by time: the rate window of status and the display. Queries must say `is_finished`.';

-- Downloads in flight are held runs: the staging reservation check now reads them through
-- production_runs_session_idx (every held run, a few thousand at most) instead of an index of its own.
DROP INDEX production_runs_downloading_idx;

-- The events' production is the production of the row that moved, which has its own foreign key,
-- and productions are never deleted: the per-row check on the log cost a tenth of a transition.
ALTER TABLE events DROP CONSTRAINT events_production_id_fkey;

-- Every session appends to its own point of the (session_id, id) index, splitting pages in the
-- middle of the index: with 16 sessions it cost about a quarter of the transition rate. The events
-- of one session (`events --session`) are found within its production from its session-start
-- event on instead (src/bookkeeping/events.ts).
DROP INDEX events_session_idx;
