-- 004_staging_reservations: downloads reserve their bytes.
-- While a run is `downloading`, production_runs.staged_bytes holds the bytes it is about to write
-- and staged_path where. Before starting downloads, a session sums what every session of every
-- production has reserved under the same staging directory (under an advisory lock on that
-- directory), so two shifters cannot both see room and overfill the disk. The reservation ends
-- with the status: staged (the bytes are on disk), or back to new (abort, reap, failure).
CREATE INDEX production_runs_downloading_idx ON production_runs (staged_path) WHERE status = 'downloading';
COMMENT ON INDEX production_runs_downloading_idx IS 'Downloads in flight, for the staging-area reservation check.';
