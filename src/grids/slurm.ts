import { join } from 'node:path';
import { failureExitCode, stateFromWrapper, submitEnvironment, writeBatchScript } from './batch-script.js';
import { COMMAND_OPTION_KINDS, firstLine, type BackendOptions, readOptions, runCommand, type CommandResult, type CommandRunner } from './command.js';
import { budgetUsed, GridUnavailableError, NOT_LOOKED_AT, type Grid, type JobRef, type JobSpec, type JobState, type PollOptions } from './grid.js';
import { readWrapperStatus, type WrapperStatus } from './wrapper.js';

/**
 * Slurm backend. The queue (squeue) answers for live jobs; for jobs that left
 * it, accounting (sacct) answers when configured, then the controller's memory
 * of recent jobs (scontrol, until MinJobAge), then the wrapper's status file,
 * which outlives both.
 *
 * Jobs are submitted with --export=NONE (a directive in the batch script), so
 * that sbatch sends none of the submitter's environment with the job; the
 * batch script sets the job's environment itself (batch-script.ts).
 */

const SLURM_OPTIONS = {
  /** `--partition`. */
  partition: 'string',
  /** `--account`. */
  account: 'string',
  /** Wall-time limit in a form sbatch accepts, e.g. `02:00:00` or `1-00:00:00`. */
  time: 'string or number',
  /** Memory per node in a form sbatch accepts, e.g. `4G`. */
  memory: 'string or number',
  /** Further sbatch arguments, passed as they are (e.g. `--qos=long`). */
  extraArgs: 'string list',
  ...COMMAND_OPTION_KINDS,
} as const;

export type SlurmOptions = BackendOptions<typeof SLURM_OPTIONS>;

/** Reads `job.options` of a production type whose backend is slurm; throws naming the bad option. */
export function slurmOptionsFrom(raw: Record<string, unknown>, where = 'job.options'): SlurmOptions {
  const options = readOptions(raw, SLURM_OPTIONS, where);
  // sbatch takes any unique prefix of a long option: --exp=ALL is --export=ALL.
  const exporting = options.extraArgs?.find((arg) => /^--exp/.test(arg));
  if (exporting !== undefined) {
    throw new Error(
      `${where}.extraArgs: ${JSON.stringify(exporting)} is not allowed: jobs are submitted with --export=NONE, so that no secret of ` +
        "the shifter's environment reaches them; name the variables a job needs in job.environment",
    );
  }
  return options;
}

/**
 * The batch script's directive: the job gets none of sbatch's environment (only SLURM_*). A
 * directive rather than an argument; SBATCH_EXPORT, which would override it, is removed from
 * sbatch's environment (submitEnvironment), and `--export` in extraArgs is refused.
 */
export const SLURM_DIRECTIVES = ['#SBATCH --export=NONE'];

/** A job id as sbatch reported it: `1234`, or `1234;cluster` in a multi-cluster setup. */
interface SlurmJobId {
  id: string;
  cluster?: string;
}

export function parseSlurmJobId(jobId: string): SlurmJobId {
  const match = /^(\d+)(?:;(\S+))?$/.exec(jobId.trim());
  if (match === null) throw new Error(`not a Slurm job id: ${JSON.stringify(jobId)}`);
  return match[2] === undefined ? { id: match[1]! } : { id: match[1]!, cluster: match[2] };
}

/** sbatch --parsable prints `JOBID` or `JOBID;CLUSTER`; warnings may precede it. */
export function parseSbatchOutput(stdout: string): string {
  const lines = stdout.split('\n').map((line) => line.trim()).filter((line) => line.length > 0);
  const last = lines.at(-1) ?? '';
  if (!/^\d+(;\S+)?$/.test(last)) throw new GridUnavailableError(`sbatch gave no job id (output: ${JSON.stringify(stdout.slice(0, 200))})`);
  return last;
}

/** What one source (squeue, sacct, scontrol) knows about one job. */
export interface SlurmRecord {
  state: string;
  /** `N:S`: exit status and signal. */
  exitCode?: string;
  nodes?: string;
}

type StateClass = 'queued' | 'running' | 'success' | 'failure' | 'unknown';

const STATE_CLASSES: Record<string, StateClass> = {
  PENDING: 'queued',
  CONFIGURING: 'queued',
  REQUEUED: 'queued',
  REQUEUE_HOLD: 'queued',
  REQUEUE_FED: 'queued',
  RESV_DEL_HOLD: 'queued',
  SPECIAL_EXIT: 'queued',
  RUNNING: 'running',
  COMPLETING: 'running',
  SUSPENDED: 'running',
  STOPPED: 'running',
  SIGNALING: 'running',
  STAGE_OUT: 'running',
  RESIZING: 'running',
  COMPLETED: 'success',
  FAILED: 'failure',
  TIMEOUT: 'failure',
  OUT_OF_MEMORY: 'failure',
  NODE_FAIL: 'failure',
  CANCELLED: 'failure',
  PREEMPTED: 'failure',
  BOOT_FAIL: 'failure',
  DEADLINE: 'failure',
};

/** sacct writes `CANCELLED by 1000`; only the first word is the state. */
function classify(state: string): StateClass {
  return STATE_CLASSES[state.split(/\s+/)[0]!.toUpperCase()] ?? 'unknown';
}

/** `N:S` → N, or 128+S when a signal ended the job. */
export function exitFromSlurm(exitCode: string | undefined): number | undefined {
  const match = /^(\d+):(\d+)$/.exec(exitCode?.trim() ?? '');
  if (match === null) return undefined;
  const signal = Number(match[2]);
  return signal > 0 ? 128 + signal : Number(match[1]);
}

function nodesOrUndefined(nodes: string | undefined): string | undefined {
  const trimmed = nodes?.trim();
  return trimmed === undefined || trimmed === '' || trimmed === '(null)' || trimmed === 'None assigned' ? undefined : trimmed;
}

/** Combines what Slurm says with the wrapper's record into one JobState. */
export function slurmJobState(record: SlurmRecord, wrapper: WrapperStatus | undefined): JobState {
  const state = record.state.split(/\s+/)[0]!.toUpperCase();
  const host = wrapper?.host ?? nodesOrUndefined(record.nodes);
  switch (classify(state)) {
    case 'queued':
      return { state: 'queued' };
    case 'running':
      return host === undefined ? { state: 'running' } : { state: 'running', host };
    case 'success': {
      const exitCode = wrapper?.exit ?? exitFromSlurm(record.exitCode) ?? 0;
      return withHost({ state: 'done', exitCode }, host);
    }
    case 'failure':
      return withHost(
        { state: 'done', exitCode: failureExitCode(wrapper?.exit, exitFromSlurm(record.exitCode)), reason: `Slurm job state ${state}` },
        host,
      );
    case 'unknown':
      // A state this code does not know (a newer Slurm): the job is still in
      // Slurm's hands, so trust the wrapper if it finished, else wait.
      if (wrapper?.exit !== undefined) return { state: 'done', exitCode: wrapper.exit, host: wrapper.host, reason: `Slurm job state ${state}` };
      return wrapper !== undefined ? { state: 'running', host: wrapper.host } : { state: 'queued' };
  }
}

function withHost(state: { state: 'done'; exitCode: number; reason?: string }, host: string | undefined): JobState {
  return host === undefined ? state : { ...state, host };
}

/** `squeue --format=%i|%T|%N` lines; anything else (a `CLUSTER:` banner with -M) is skipped. */
export function parseSqueue(stdout: string): Map<string, SlurmRecord> {
  const records = new Map<string, SlurmRecord>();
  for (const line of stdout.split('\n')) {
    const match = /^\s*(\d+)\|([A-Z_]+)\|(.*)$/.exec(line);
    if (match !== null) records.set(match[1]!, { state: match[2]!, nodes: match[3]!.trim() });
  }
  return records;
}

/** `sacct -n -P -X --format=JobID,State,ExitCode,NodeList` lines. */
export function parseSacct(stdout: string): Map<string, SlurmRecord> {
  const records = new Map<string, SlurmRecord>();
  for (const line of stdout.split('\n')) {
    const fields = line.trim().split('|');
    if (fields.length < 4 || !/^\d+$/.test(fields[0]!)) continue;
    records.set(fields[0]!, { state: fields[1]!, exitCode: fields[2]!, nodes: fields[3]! });
  }
  return records;
}

/** `scontrol show job ID`: `Key=Value` pairs over several lines. */
export function parseScontrolJob(stdout: string): SlurmRecord | undefined {
  const state = /\bJobState=(\S+)/.exec(stdout)?.[1];
  if (state === undefined) return undefined;
  const exitCode = /\bExitCode=(\d+:\d+)/.exec(stdout)?.[1];
  const nodes = /\bNodeList=(\S+)/.exec(stdout)?.[1];
  return { state, ...(exitCode === undefined ? {} : { exitCode }), ...(nodes === undefined ? {} : { nodes }) };
}

/** Slurm's answer for an id it has forgotten: not an error for us. */
const INVALID_JOB_ID = /Invalid job id specified/i;
/** scancel's complaint about a job that ended meanwhile. */
const ALREADY_GONE = /Invalid job id specified|already completing or completed|Job\/step already completing/i;

function sbatchArgs(options: SlurmOptions, job: JobSpec): string[] {
  // Slurm expands %-patterns in --output/--error; a literal % must be doubled.
  const logBase = join(job.workDir, `${job.name}.slurm-%j`).replace(/%(?!j$)/g, '%%');
  const args = [
    '--parsable',
    `--job-name=${job.name}`,
    `--chdir=${job.workDir}`,
    // The wrapper sends the script's output to stdoutPath/stderrPath; this only
    // catches what Slurm itself or the batch shell say before the wrapper starts.
    `--output=${logBase}.out`,
    `--error=${logBase}.err`,
  ];
  if (options.partition !== undefined) args.push(`--partition=${options.partition}`);
  if (options.account !== undefined) args.push(`--account=${options.account}`);
  if (options.time !== undefined) args.push(`--time=${options.time}`);
  if (options.memory !== undefined) args.push(`--mem=${options.memory}`);
  args.push(...(options.extraArgs ?? []));
  return args;
}

function clusterArgs(cluster: string | undefined): string[] {
  return cluster === undefined ? [] : [`--clusters=${cluster}`];
}

function groupByCluster<T extends { jobId: string }>(items: readonly T[]): Map<string | undefined, { item: T; id: string }[]> {
  const groups = new Map<string | undefined, { item: T; id: string }[]>();
  for (const item of items) {
    const { id, cluster } = parseSlurmJobId(item.jobId);
    const group = groups.get(cluster) ?? [];
    group.push({ item, id });
    groups.set(cluster, group);
  }
  return groups;
}

export function createSlurmGrid(options: SlurmOptions, run: CommandRunner = runCommand): Grid {
  const timeoutMs = (options.commandTimeoutSeconds ?? 30) * 1000;
  const slurm: Slurm = (argv, env) =>
    run(argv, { timeoutMs, ...(options.sshHost === undefined ? {} : { sshHost: options.sshHost }), ...(env === undefined ? {} : { env }) });
  const queries = slurmQueries(slurm);

  return {
    backend: 'slurm',

    async submit(job: JobSpec): Promise<string> {
      const script = await writeBatchScript(job, SLURM_DIRECTIVES, options.environment === undefined ? {} : { allow: options.environment });
      const result = await slurm(['sbatch', ...sbatchArgs(options, job), script], submitEnvironment(['SBATCH_EXPORT']));
      if (result.code !== 0) throw new GridUnavailableError(`sbatch failed: ${firstLine(result.stderr) || `exit ${result.code}`}`);
      return parseSbatchOutput(result.stdout);
    },

    async poll(jobs: readonly JobRef[], options?: PollOptions): Promise<Map<string, JobState>> {
      const answer = new Map<string, JobState>();
      // One squeue per cluster, each the bulk query of its jobs: made whatever the deadline.
      for (const [cluster, group] of groupByCluster(jobs)) await pollCluster(queries, group, cluster, answer, options);
      return answer;
    },

    async cancel(jobIds: readonly string[]): Promise<void> {
      for (const [cluster, group] of groupByCluster(jobIds.map((jobId) => ({ jobId })))) {
        const result = await slurm(['scancel', ...clusterArgs(cluster), ...group.map((entry) => entry.id)]);
        if (result.code === 0) continue;
        const complaints = result.stderr.split('\n').filter((line) => line.trim() !== '');
        if (complaints.length > 0 && complaints.every((line) => ALREADY_GONE.test(line))) continue;
        throw new GridUnavailableError(`scancel failed: ${firstLine(result.stderr) || `exit ${result.code}`}`);
      }
    },

    canReach(): boolean {
      // Slurm's commands reach every job of the cluster from any submit host.
      return true;
    },
  };
}

/** A Slurm command run with the grid's timeout, over ssh when the grid says so. */
type Slurm = (argv: string[], env?: NodeJS.ProcessEnv) => Promise<CommandResult>;

/** The three ways to ask Slurm about jobs, each parsed into records by job id. */
interface SlurmQueries {
  squeue(ids: string[], cluster: string | undefined): Promise<Map<string, SlurmRecord>>;
  sacct(ids: string[], cluster: string | undefined): Promise<Map<string, SlurmRecord>>;
  scontrol(id: string, cluster: string | undefined): Promise<SlurmRecord | undefined>;
}

function slurmQueries(slurm: Slurm): SlurmQueries {
  /** Set once sacct said accounting is off, so later polls skip straight to scontrol. */
  let accountingDisabled = false;
  return {
    async squeue(ids, cluster) {
      const result = await slurm(['squeue', ...clusterArgs(cluster), '--noheader', '--states=all', '--format=%i|%T|%N', `--jobs=${ids.join(',')}`]);
      if (result.code !== 0) {
        // With a single id squeue fails when it has forgotten the job; that only means "not in the queue".
        if (INVALID_JOB_ID.test(result.stderr)) return new Map();
        throw new GridUnavailableError(`squeue failed: ${firstLine(result.stderr) || `exit ${result.code}`}`);
      }
      return parseSqueue(result.stdout);
    },

    async sacct(ids, cluster) {
      if (accountingDisabled || ids.length === 0) return new Map();
      const result = await slurm(['sacct', ...clusterArgs(cluster), '-n', '-P', '-X', '-j', ids.join(','), '--format=JobID,State,ExitCode,NodeList']);
      if (result.code !== 0) {
        if (/accounting storage is disabled/i.test(result.stderr)) accountingDisabled = true;
        // Accounting down or not configured: fall back to scontrol, not an outage.
        return new Map();
      }
      return parseSacct(result.stdout);
    },

    async scontrol(id, cluster) {
      const result = await slurm(['scontrol', ...(cluster === undefined ? [] : ['-M', cluster]), 'show', 'job', id]);
      if (result.code !== 0) {
        if (INVALID_JOB_ID.test(result.stderr)) return undefined;
        throw new GridUnavailableError(`scontrol show job failed: ${firstLine(result.stderr) || `exit ${result.code}`}`);
      }
      return parseScontrolJob(result.stdout);
    },
  };
}

/** The states of one cluster's jobs: squeue for all, then the wrapper, sacct and scontrol for those it does not settle. */
async function pollCluster(
  queries: SlurmQueries,
  group: { item: JobRef; id: string }[],
  cluster: string | undefined,
  answer: Map<string, JobState>,
  options: PollOptions | undefined,
): Promise<void> {
  const queue = await queries.squeue(group.map((entry) => entry.id), cluster);
  // Jobs squeue shows as live are settled by it alone; finished or missing
  // ones need the wrapper's record and an exit code from elsewhere.
  const rest: { ref: JobRef; id: string; queued?: SlurmRecord; wrapper?: WrapperStatus }[] = [];
  for (const { item, id } of group) {
    const record = queue.get(id);
    const kind = record === undefined ? undefined : classify(record.state);
    if (record !== undefined && (kind === 'queued' || kind === 'running')) answer.set(item.jobId, slurmJobState(record, undefined));
    else rest.push({ ref: item, id, ...(record === undefined ? {} : { queued: record }) });
  }
  await Promise.all(rest.map(async (entry) => {
    const status = await readWrapperStatus(entry.ref.statusPath);
    if (status !== undefined) entry.wrapper = status;
  }));

  const needDetail = rest.filter((entry) => {
    // Finished per squeue and the wrapper has the exit code: nothing more to ask.
    if (entry.queued !== undefined && (entry.wrapper?.exit !== undefined || classify(entry.queued.state) === 'unknown')) {
      answer.set(entry.ref.jobId, slurmJobState(entry.queued, entry.wrapper));
      return false;
    }
    return true;
  });
  // squeue is always asked; sacct and each scontrol only while the pass has time left.
  const accounted = budgetUsed(options) ? new Map<string, SlurmRecord>() : await queries.sacct(needDetail.map((entry) => entry.id), cluster);
  for (const entry of needDetail) {
    const fromAccounting = accounted.get(entry.id);
    if (fromAccounting === undefined && budgetUsed(options)) {
      answer.set(entry.ref.jobId, NOT_LOOKED_AT);
      continue;
    }
    const record = fromAccounting ?? (await queries.scontrol(entry.id, cluster)) ?? entry.queued;
    answer.set(entry.ref.jobId, record === undefined ? stateFromWrapper(entry.wrapper, 'Slurm') : slurmJobState(record, entry.wrapper));
  }
}
