-- 009_roles: who may do what, enforced by the database (issue 13).
--
-- A production database is shared by a whole collaboration, and until now every login acted as the
-- owner of every table: any shifter could rewrite a frozen config (which other shifters' sessions
-- then ran as themselves), delete the event log, or act in another shifter's name. From here on:
--
--   run_production_owner        owns every table, view and function; no login acts as it (a site's
--                               administrator may be a member, to migrate)
--   run_production_reader       may read everything (status, reports, the web page)
--   run_production_shifter      also runs sessions: claims and moves runs, pauses and resumes
--   run_production_coordinator  also creates and closes productions, sets limits, retries failed
--                               runs, releases other shifters' sessions, fixes validated runs and
--                               imports the catalogue
--
-- Enforcement is grants (column by column, so nobody can name the columns that carry identity),
-- row-level security (a shifter moves only runs that are free, held by a session of their own login,
-- or held by a session whose lease expired), and triggers (the frozen definition of a production and
-- the event log cannot be changed by anyone). Identity is the database login (session_user), stored by
-- column defaults nobody else may write; the Unix account and host stay beside it, as information.
-- A superuser (the embedded server's postgres) bypasses all of this, as superusers do.

-- ---------------------------------------------------------------------------------------------------
-- The roles. They belong to the whole server (every database on it), so a second database, or a
-- second migrator racing this one, finds them made already.
DO $$
DECLARE
  wanted text[] := ARRAY['run_production_owner', 'run_production_reader', 'run_production_shifter', 'run_production_coordinator'];
  r text;
BEGIN
  FOREACH r IN ARRAY wanted LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
      EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL; -- made by a concurrent migrator meanwhile
        WHEN insufficient_privilege THEN
          RAISE EXCEPTION 'run-production needs the group roles run_production_owner, run_production_reader, run_production_shifter and run_production_coordinator, and % may not create roles. Ask the database administrator to create them (NOLOGIN), then migrate again.', current_user
            USING ERRCODE = 'insufficient_privilege';
      END;
    END IF;
  END LOOP;
END $$;

GRANT run_production_reader TO run_production_shifter;
GRANT run_production_shifter TO run_production_coordinator;
-- The migrating login keeps the right to migrate: it acts as the owner through membership.
DO $$
BEGIN
  IF NOT pg_has_role(current_user, 'run_production_owner', 'MEMBER') THEN
    EXECUTE format('GRANT run_production_owner TO %I', current_user);
  END IF;
END $$;

-- ---------------------------------------------------------------------------------------------------
-- Identity: the database login, written by defaults that no shifter's grant lets them override.
ALTER TABLE events ADD COLUMN login text;
ALTER TABLE events ALTER COLUMN login SET DEFAULT session_user;
COMMENT ON COLUMN events.login IS 'Database login that wrote the event (session_user; NULL for events written before logins were recorded). user_name is the Unix account, as information only.';
ALTER TABLE sessions ADD COLUMN login text;
ALTER TABLE sessions ALTER COLUMN login SET DEFAULT session_user;
COMMENT ON COLUMN sessions.login IS 'Database login that runs the session (session_user; NULL for sessions from before logins were recorded). user_name and host are the Unix account and machine, as information only.';

-- The frozen definition says who froze it, when, and what it was.
ALTER TABLE productions ADD COLUMN frozen_by text;
ALTER TABLE productions ADD COLUMN frozen_at timestamptz;
ALTER TABLE productions ADD COLUMN config_sha256 text;
COMMENT ON COLUMN productions.frozen_by IS 'Database login that froze the config (created the production); created_by for productions frozen before logins were recorded.';
COMMENT ON COLUMN productions.frozen_at IS 'When the config was frozen.';
COMMENT ON COLUMN productions.config_sha256 IS 'sha256 of config as frozen (of its text as PostgreSQL prints the jsonb); a session refuses a config that no longer matches it.';
UPDATE productions
   SET frozen_by = created_by,
       frozen_at = started_at,
       config_sha256 = encode(sha256(convert_to(config::text, 'UTF8')), 'hex');

CREATE FUNCTION production_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    -- Whatever the inserter said: the login, now, and the hash of what is stored.
    NEW.frozen_by := session_user;
    NEW.frozen_at := now();
    NEW.config_sha256 := encode(sha256(convert_to(NEW.config::text, 'UTF8')), 'hex');
    RETURN NEW;
  END IF;
  IF NEW.config IS DISTINCT FROM OLD.config OR NEW.modules IS DISTINCT FROM OLD.modules
     OR NEW.config_sha256 IS DISTINCT FROM OLD.config_sha256 OR NEW.frozen_by IS DISTINCT FROM OLD.frozen_by
     OR NEW.frozen_at IS DISTINCT FROM OLD.frozen_at OR NEW.type IS DISTINCT FROM OLD.type
     OR NEW.version IS DISTINCT FROM OLD.version OR NEW.tag IS DISTINCT FROM OLD.tag
     OR NEW.parent_id IS DISTINCT FROM OLD.parent_id OR NEW.created_by IS DISTINCT FROM OLD.created_by THEN
    RAISE EXCEPTION 'the frozen definition of % v% (config, modules, tag, parent, who froze it) cannot be changed; start a new version with run-production new', OLD.type, OLD.version
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- Pausing and resuming are a shifter's; closing and reopening are a coordinator's.
  IF (NEW.status = 'closed') <> (OLD.status = 'closed') AND NOT pg_has_role(session_user, 'run_production_coordinator', 'MEMBER') THEN
    RAISE EXCEPTION 'closing or reopening % v% needs the run_production_coordinator role', OLD.type, OLD.version
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
COMMENT ON FUNCTION production_frozen() IS 'Stamps a new production with who froze its config, when, and its hash; refuses any change of the frozen definition (for everyone), and closing or reopening by anyone but a coordinator.';
CREATE TRIGGER productions_frozen BEFORE INSERT OR UPDATE ON productions FOR EACH ROW EXECUTE FUNCTION production_frozen();

-- The event log is append-only, for everyone.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events is append-only: its rows cannot be changed or deleted' USING ERRCODE = 'insufficient_privilege';
END $$;
COMMENT ON FUNCTION events_append_only() IS 'Refuses UPDATE, DELETE and TRUNCATE of events: the log of who did what must outlive every quarrel.';
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- The status counters follow every move of every login: their trigger runs as the owner, so nobody
-- needs (or gets) a grant on the counters themselves.
ALTER FUNCTION production_status_counts_apply() SECURITY DEFINER;
ALTER FUNCTION production_status_counts_apply() SET search_path = public, pg_temp;

-- ---------------------------------------------------------------------------------------------------
-- Row-level security: what a shifter's statements may touch.

-- Whether the session is this login's own.
CREATE FUNCTION session_is_mine(s uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM sessions WHERE id = s AND login = session_user)
$$;
COMMENT ON FUNCTION session_is_mine(uuid) IS 'True when the session belongs to the current database login.';

-- Whether a shifter may take the session's runs: it is theirs, or it is dead (lease expired, or
-- ended while still holding runs), so that any shifter's session can reap and adopt it.
CREATE FUNCTION session_is_mine_or_dead(s uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM sessions
                  WHERE id = s
                    AND (login = session_user OR ended_at IS NOT NULL OR heartbeat_at < now() - lease_seconds * interval '1 second'))
$$;
COMMENT ON FUNCTION session_is_mine_or_dead(uuid) IS 'True when the session belongs to the current login, or has ended or let its lease expire (its runs may be reaped).';

ALTER TABLE production_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY production_runs_read ON production_runs FOR SELECT USING (true);
CREATE POLICY production_runs_coordinate ON production_runs FOR ALL TO run_production_coordinator USING (true) WITH CHECK (true);
-- Finished and failed runs are a coordinator's (retry, validate --fix). Claiming takes a free run,
-- moving needs the run's session to be the shifter's own, reaping a dead one; afterwards the run is
-- free again or held by a session of the shifter's own.
CREATE POLICY production_runs_move ON production_runs FOR UPDATE TO run_production_shifter
  USING (status NOT IN ('finished', 'failed') AND (session_id IS NULL OR session_is_mine_or_dead(session_id)))
  WITH CHECK (session_id IS NULL OR session_is_mine(session_id));

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY sessions_read ON sessions FOR SELECT USING (true);
CREATE POLICY sessions_coordinate ON sessions FOR ALL TO run_production_coordinator USING (true) WITH CHECK (true);
CREATE POLICY sessions_start ON sessions FOR INSERT TO run_production_shifter WITH CHECK (login = session_user);
-- A shifter heartbeats and ends their own sessions, and ends (reaps) dead ones; nobody else's live one.
CREATE POLICY sessions_renew ON sessions FOR UPDATE TO run_production_shifter
  USING (login = session_user OR ended_at IS NOT NULL OR heartbeat_at < now() - lease_seconds * interval '1 second')
  WITH CHECK (login = session_user OR ended_at IS NOT NULL);

-- ---------------------------------------------------------------------------------------------------
-- Ownership and grants.
ALTER TABLE runs OWNER TO run_production_owner;
ALTER TABLE productions OWNER TO run_production_owner;
ALTER TABLE sessions OWNER TO run_production_owner;
ALTER TABLE production_runs OWNER TO run_production_owner;
ALTER TABLE events OWNER TO run_production_owner;
ALTER TABLE run_status_transitions OWNER TO run_production_owner;
ALTER TABLE production_status_counts OWNER TO run_production_owner;
ALTER TABLE schema_migrations OWNER TO run_production_owner;
ALTER VIEW attempt_outcomes OWNER TO run_production_owner;
ALTER VIEW production_summary OWNER TO run_production_owner;
ALTER VIEW run_history OWNER TO run_production_owner;
ALTER VIEW operator_activity OWNER TO run_production_owner;
ALTER VIEW failed_attempts OWNER TO run_production_owner;
ALTER VIEW failures OWNER TO run_production_owner;
ALTER TYPE run_status OWNER TO run_production_owner;
ALTER TYPE production_status OWNER TO run_production_owner;
ALTER FUNCTION production_status_counts_apply() OWNER TO run_production_owner;
ALTER FUNCTION session_may_act(uuid) OWNER TO run_production_owner;
ALTER FUNCTION lock_session_for_ending(uuid) OWNER TO run_production_owner;
ALTER FUNCTION production_frozen() OWNER TO run_production_owner;
ALTER FUNCTION events_append_only() OWNER TO run_production_owner;
ALTER FUNCTION session_is_mine(uuid) OWNER TO run_production_owner;
ALTER FUNCTION session_is_mine_or_dead(uuid) OWNER TO run_production_owner;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO run_production_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO run_production_reader;

-- Shifters: sessions, moves, events, pause and resume. Never the columns that say who.
GRANT INSERT (user_name, host, pid, production_id, options, lease_seconds) ON sessions TO run_production_shifter;
GRANT UPDATE (heartbeat_at, ended_at, end_reason) ON sessions TO run_production_shifter;
GRANT UPDATE (status, status_changed_at, attempts, claimed_by, session_id, job_id, job_token, staged_path, staged_bytes,
              claimed_at, submitted_at, started_at, finished_at, exit_code, outputs, output_bytes, last_error)
   ON production_runs TO run_production_shifter;
GRANT INSERT (production_id, run_number, session_id, user_name, from_status, to_status, kind, message) ON events TO run_production_shifter;
GRANT USAGE ON SEQUENCE events_id_seq TO run_production_shifter;
GRANT UPDATE (status, status_reason, status_changed_at, stopped_at) ON productions TO run_production_shifter;

-- Coordinators: the catalogue, new productions and their runs, limits and attempts, and everything
-- a shifter may do to anyone's runs and sessions (release --force, retry, validate --fix).
GRANT INSERT, UPDATE ON runs TO run_production_coordinator;
GRANT INSERT (type, version, tag, parent_id, config, modules, max_attempts, max_running, datasets, quality, created_by)
   ON productions TO run_production_coordinator;
GRANT UPDATE (max_running, max_attempts) ON productions TO run_production_coordinator;
GRANT USAGE ON SEQUENCE productions_id_seq TO run_production_coordinator;
GRANT INSERT (production_id, run_number, dataset) ON production_runs TO run_production_coordinator;
