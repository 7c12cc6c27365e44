-- 007_job_release: a job runs only once it is recorded.
--
-- A session killed between the scheduler accepting a job and the database recording it used to
-- leave a job nobody knew of, which could run beside the run's next attempt and write its outputs
-- twice. Every job is now submitted gated (bin/rp-job-wrapper): it runs its script only once the
-- release file next to its status file holds the token of its submission, and the session writes
-- that file only after the job id and the token are committed here. Whoever adopts a dead session's
-- submitted run releases it again from this column.

ALTER TABLE production_runs ADD COLUMN job_token text;
COMMENT ON COLUMN production_runs.job_token IS 'Release token of the current job''s submission: its job runs only once the release file next to its status file holds this token (see bin/rp-job-wrapper); an adopter of the run releases it with it.';
