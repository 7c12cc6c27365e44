-- 008_faults: guarantees under faults (issue 12).
--
-- A session that was ended (released by an operator, reaped by another session) must never move a
-- run again, even one it still holds: `release --force` ends the session first and only then
-- cancels its jobs and returns its runs, and a session that went on moving them in between
-- (counting the cancelled jobs as failed, claiming again, submitting again) left runs `submitted`
-- under an ended session for ever. Every move now asks session_may_act() in its own statement.
--
-- Asking `ended_at IS NULL` in the moving statement's own snapshot is not enough: a statement that
-- started just before the session was ended would still see it live and commit its move afterwards.
-- So the check takes a shared advisory lock on the acting session, and whoever ends a session takes
-- that lock exclusively first (lock_session_for_ending): it waits for moves under way, and any move
-- that comes after sees the session ended, read in a fresh snapshot (the function is VOLATILE).

CREATE FUNCTION session_may_act(acting uuid) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  -- An operator command outside a session: nothing to fence.
  IF acting IS NULL THEN
    RETURN true;
  END IF;
  -- Never waits: a session being ended at this moment may not act (and a move that waited here,
  -- holding run rows the ender wants, could deadlock with it).
  IF NOT pg_try_advisory_xact_lock_shared(('x' || substr(acting::text, 1, 8))::bit(32)::int,
                                          ('x' || substr(acting::text, 10, 4) || substr(acting::text, 15, 4))::bit(32)::int) THEN
    RETURN false;
  END IF;
  -- A statement of its own, so a snapshot taken after the lock: an end committed before it is seen.
  RETURN EXISTS (SELECT 1 FROM sessions WHERE id = acting AND ended_at IS NULL);
END $$;
COMMENT ON FUNCTION session_may_act(uuid) IS
  'Whether a session may move runs now: true for NULL (an operator), else only while the session exists and has not ended. Takes a shared advisory lock on the session until the transaction ends, so lock_session_for_ending waits for moves under way; never waits itself (a session being ended may not act).';

CREATE FUNCTION lock_session_for_ending(ending uuid) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  -- The same key as session_may_act, in the two-integer key space (no other lock of ours uses it).
  PERFORM pg_advisory_xact_lock(('x' || substr(ending::text, 1, 8))::bit(32)::int,
                                ('x' || substr(ending::text, 10, 4) || substr(ending::text, 15, 4))::bit(32)::int);
END $$;
COMMENT ON FUNCTION lock_session_for_ending(uuid) IS
  'Taken by whoever ends a session (reaper, release) before locking its row: waits until no move of that session is under way, and until the transaction ends every move of it is refused by session_may_act.';

-- One job's preparation failing (an output directory that cannot be created, a full disk) fails that
-- attempt only: the run goes back to new with the attempt counted, or to failed once they are used up.
INSERT INTO run_status_transitions (from_status, to_status, why) VALUES
  ('staged', 'failed', 'the job could not be prepared and attempts are exhausted');
UPDATE run_status_transitions
   SET why = 'abort, drain, reap or release returns it; or its job could not be prepared (attempt counted)'
 WHERE from_status = 'staged' AND to_status = 'new';

COMMENT ON COLUMN sessions.ended_at IS 'When the session ended (NULL while live). An ended session can no longer move runs (session_may_act); one that still holds runs a lease after it ended is recovered by the reaper.';
COMMENT ON COLUMN production_runs.job_token IS 'Release token of the current job''s submission: its job runs only once the release file next to its status file holds this token (see bin/rp-job-wrapper); an adopter of the run releases it with it. A reaper that cannot reach the job writes a revocation there instead, and the job stops.';
