import type { ColumnType, Generated } from 'kysely';
import type { RunStatus } from '../coordinator/statuses.js';

/** Typed view of the tables in sql/. Timestamps come back as Date. */

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export type ProductionStatus = 'active' | 'paused' | 'closed';

export interface RunsTable {
  run_number: number;
  dataset: string;
  quality: string;
  size_bytes: number | null;
  checksum: string | null;
  source: string | null;
  imported_at: Timestamp;
}

export interface ProductionsTable {
  id: Generated<number>;
  type: string;
  version: number;
  tag: string;
  parent_id: number | null;
  config: ColumnType<unknown, string, string>;
  modules: string | null;
  max_attempts: number;
  max_running: number | null;
  status: ColumnType<ProductionStatus, ProductionStatus | undefined, ProductionStatus>;
  status_reason: string | null;
  status_changed_at: Timestamp;
  datasets: string[] | null;
  quality: string | null;
  created_by: string;
  started_at: Timestamp;
  stopped_at: NullableTimestamp;
}

export interface SessionsTable {
  id: Generated<string>;
  user_name: string;
  host: string;
  pid: number;
  production_id: number | null;
  options: ColumnType<Record<string, unknown>, string | undefined, string>;
  lease_seconds: number;
  started_at: Timestamp;
  heartbeat_at: Timestamp;
  ended_at: NullableTimestamp;
  end_reason: string | null;
}

export interface ProductionRunsTable {
  production_id: number;
  run_number: number;
  dataset: string;
  status: ColumnType<RunStatus, RunStatus | undefined, RunStatus>;
  attempts: ColumnType<number, number | undefined, number>;
  claimed_by: string | null;
  session_id: string | null;
  job_id: string | null;
  staged_path: string | null;
  staged_bytes: number | null;
  claimed_at: NullableTimestamp;
  submitted_at: NullableTimestamp;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
  status_changed_at: Timestamp;
  exit_code: number | null;
  outputs: ColumnType<Record<string, string> | null, string | null | undefined, string | null>;
  output_bytes: number | null;
  last_error: string | null;
}

export interface EventsTable {
  id: Generated<number>;
  at: Timestamp;
  production_id: number | null;
  run_number: number | null;
  session_id: string | null;
  user_name: string;
  from_status: RunStatus | null;
  to_status: RunStatus | null;
  kind: string;
  message: string | null;
}

export interface RunStatusTransitionsTable {
  from_status: RunStatus;
  to_status: RunStatus;
  why: string;
}

export interface ProductionStatusCountsTable {
  production_id: number;
  dataset: string;
  status: RunStatus;
  shard: number;
  n: number;
}

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  checksum: string;
  applied_at: Timestamp;
  applied_by: string;
}

export interface Database {
  runs: RunsTable;
  productions: ProductionsTable;
  sessions: SessionsTable;
  production_runs: ProductionRunsTable;
  events: EventsTable;
  run_status_transitions: RunStatusTransitionsTable;
  production_status_counts: ProductionStatusCountsTable;
  schema_migrations: SchemaMigrationsTable;
}
