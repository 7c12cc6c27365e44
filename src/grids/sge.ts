import { join } from 'node:path';
import { failureExitCode, stateFromWrapper, submitEnvironment, writeBatchScript } from './batch-script.js';
import { COMMAND_OPTION_KINDS, firstLine, type BackendOptions, readOptions, runCommand, type CommandResult, type CommandRunner } from './command.js';
import { budgetUsed, GridUnavailableError, NOT_LOOKED_AT, type Grid, type JobRef, type JobSpec, type JobState, type PollOptions } from './grid.js';
import { readWrapperStatus, type WrapperStatus } from './wrapper.js';

/**
 * (Son of / Univa / Open) Grid Engine backend. Live jobs come from
 * `qstat -xml -u '*'` (XML rather than the column output, whose widths and
 * truncated names vary between Grid Engine flavours; all users, because a
 * session may adopt jobs another shifter submitted). Jobs that left the queue
 * are judged by the wrapper's status file first: qacct scans the whole
 * accounting file on every call, so it is only asked when the wrapper did
 * not record an exit (a job killed hard, e.g. on h_rt or h_vmem).
 *
 * qsub is never given -V (or -v): the job gets none of the submitter's
 * environment; the batch script sets it (batch-script.ts).
 */

const SGE_OPTIONS = {
  /** `-q`: queue (or queue list) to submit to. */
  queue: 'string',
  /** `-P`: project. */
  project: 'string',
  /** `h_rt` resource: wall-time limit, e.g. `02:00:00` or seconds. */
  time: 'string or number',
  /** `h_vmem` resource: memory limit, e.g. `4G`. */
  memory: 'string or number',
  /** Further qsub arguments, passed as they are (e.g. `-pe`, `smp`, `4`). */
  extraArgs: 'string list',
  ...COMMAND_OPTION_KINDS,
} as const;

export type SgeOptions = BackendOptions<typeof SGE_OPTIONS>;

/** Reads `job.options` of a production type whose backend is sge; throws naming the bad option. */
export function sgeOptionsFrom(raw: Record<string, unknown>, where = 'job.options'): SgeOptions {
  const options = readOptions(raw, SGE_OPTIONS, where);
  const exporting = options.extraArgs?.find((arg) => arg === '-V' || arg === '-v');
  if (exporting !== undefined) {
    throw new Error(
      `${where}.extraArgs: ${JSON.stringify(exporting)} is not allowed: it would copy the shifter's environment, secrets included, ` +
        'into the job (or put values on the command line); name the variables a job needs in job.environment',
    );
  }
  return options;
}

/** One job as qstat lists it. */
export interface SgeQueueEntry {
  /** Grid Engine state letters: qw, hqw, r, t, Rr, s, Eqw, dr, ... */
  state: string;
  /** `queue@host` for running jobs, empty while pending. */
  queueName?: string;
}

/** qstat -xml: a flat list of `<job_list>` elements under queue_info (running) and job_info (pending). */
export function parseQstatXml(xml: string): Map<string, SgeQueueEntry> {
  const jobs = new Map<string, SgeQueueEntry>();
  for (const match of xml.matchAll(/<job_list\b[^>]*>([\s\S]*?)<\/job_list>/g)) {
    const body = match[1]!;
    const id = /<JB_job_number>\s*(\d+)\s*<\/JB_job_number>/.exec(body)?.[1];
    const state = /<state>\s*([^<]*?)\s*<\/state>/.exec(body)?.[1];
    if (id === undefined || state === undefined) continue;
    const queueName = /<queue_name>\s*([^<]*?)\s*<\/queue_name>/.exec(body)?.[1];
    // An array job shows up once per task; the first entry is as good as any for our single-task jobs.
    if (!jobs.has(id)) jobs.set(id, queueName ? { state, queueName } : { state });
  }
  return jobs;
}

/** The host part of `all.q@node07.cluster`. */
function hostOfQueue(queueName: string | undefined): string | undefined {
  const at = queueName?.lastIndexOf('@') ?? -1;
  return at >= 0 ? queueName!.slice(at + 1) : undefined;
}

/**
 * Grid Engine state letters to our states. Anything still waiting (q/w, also
 * held `hqw` and error `Eqw`, which an operator can clear with qmod -cj) is
 * queued; running, transferring, suspended or being deleted while running is
 * running.
 */
export function sgeQueueState(entry: SgeQueueEntry): JobState {
  if (/[qw]/.test(entry.state)) return { state: 'queued' };
  if (/[rtsST]/.test(entry.state)) {
    const host = hostOfQueue(entry.queueName);
    return host === undefined ? { state: 'running' } : { state: 'running', host };
  }
  return { state: 'queued' };
}

/** The fields of one qacct record that matter here. */
export interface QacctRecord {
  hostname?: string;
  exitStatus?: number;
  /** `0`, or a code and explanation, e.g. `100 : assumedly after job`. */
  failed: string;
}

/** qacct -j ID: `key value` lines in blocks separated by `====`; a resubmitted id has several, the last counts. */
export function parseQacct(text: string): QacctRecord | undefined {
  const blocks = text.split(/^=+\s*$/m).filter((block) => /^\s*jobnumber\s/m.test(block));
  const last = blocks.at(-1);
  if (last === undefined) return undefined;
  const fields = new Map<string, string>();
  for (const line of last.split('\n')) {
    const match = /^(\w+)\s+(.*?)\s*$/.exec(line);
    if (match !== null) fields.set(match[1]!, match[2]!);
  }
  const exit = fields.get('exit_status');
  const host = fields.get('hostname');
  return {
    failed: fields.get('failed') ?? '0',
    ...(exit !== undefined && /^\d+/.test(exit) ? { exitStatus: Number.parseInt(exit, 10) } : {}),
    ...(host !== undefined && host !== '' ? { hostname: host } : {}),
  };
}

export function sgeFinishedState(record: QacctRecord, wrapper: WrapperStatus | undefined): JobState {
  const host = wrapper?.host ?? record.hostname;
  const failed = record.failed.trim();
  const base =
    failed === '0' || failed === ''
      ? { state: 'done' as const, exitCode: wrapper?.exit ?? record.exitStatus ?? 0 }
      : { state: 'done' as const, exitCode: failureExitCode(wrapper?.exit, record.exitStatus), reason: `Grid Engine failed ${failed}` };
  return host === undefined ? base : { ...base, host };
}

/** qsub -terse prints the id, or `ID.1-10:1` for array jobs. */
export function parseQsubOutput(stdout: string): string {
  const match = /^\s*(\d+)(?:\.\S*)?\s*$/m.exec(stdout);
  if (match === null) throw new GridUnavailableError(`qsub gave no job id (output: ${JSON.stringify(stdout.slice(0, 200))})`);
  return match[1]!;
}

/** Grid Engine's words for "that job does not exist (any more)". */
const NOT_FOUND = /does not exist|not found|unknown job/i;

function qsubArgs(options: SgeOptions, job: JobSpec): string[] {
  // $JOB_ID is expanded by Grid Engine itself (the argv reaches qsub unexpanded, even over ssh).
  const logBase = join(job.workDir, `${job.name}.sge-$JOB_ID`);
  const args = ['-terse', '-N', job.name, '-o', `${logBase}.out`, '-e', `${logBase}.err`, '-wd', job.workDir];
  if (options.queue !== undefined) args.push('-q', options.queue);
  if (options.project !== undefined) args.push('-P', options.project);
  const resources = [
    ...(options.time === undefined ? [] : [`h_rt=${options.time}`]),
    ...(options.memory === undefined ? [] : [`h_vmem=${options.memory}`]),
  ];
  if (resources.length > 0) args.push('-l', resources.join(','));
  args.push(...(options.extraArgs ?? []));
  return args;
}

/**
 * Grid Engine runs a script with the queue's configured shell (often csh)
 * unless told otherwise; the directive keeps the script bash even when
 * resubmitted by hand.
 */
const SGE_DIRECTIVES = ['#$ -S /bin/bash'];

export function createSgeGrid(options: SgeOptions, run: CommandRunner = runCommand): Grid {
  const timeoutMs = (options.commandTimeoutSeconds ?? 30) * 1000;
  const sge = (argv: string[], env?: NodeJS.ProcessEnv): Promise<CommandResult> =>
    run(argv, { timeoutMs, ...(options.sshHost === undefined ? {} : { sshHost: options.sshHost }), ...(env === undefined ? {} : { env }) });
  const failure = (what: string, result: CommandResult): GridUnavailableError =>
    new GridUnavailableError(`${what} failed: ${firstLine(result.stderr) || firstLine(result.stdout) || `exit ${result.code}`}`);

  async function qacct(id: string): Promise<QacctRecord | undefined> {
    const result = await sge(['qacct', '-j', id]);
    if (result.code !== 0) {
      if (NOT_FOUND.test(result.stderr) || NOT_FOUND.test(result.stdout)) return undefined;
      throw failure('qacct', result);
    }
    return parseQacct(result.stdout);
  }

  return {
    backend: 'sge',

    async submit(job: JobSpec): Promise<string> {
      const script = await writeBatchScript(job, SGE_DIRECTIVES, options.environment === undefined ? {} : { allow: options.environment });
      // A default -V (sge_request) copies qsub's environment: it holds no secret.
      const result = await sge(['qsub', ...qsubArgs(options, job), script], submitEnvironment());
      if (result.code !== 0) throw failure('qsub', result);
      return parseQsubOutput(result.stdout);
    },

    async poll(jobs: readonly JobRef[], options?: PollOptions): Promise<Map<string, JobState>> {
      const answer = new Map<string, JobState>();
      if (jobs.length === 0) return answer;
      const result = await sge(['qstat', '-xml', '-u', '*']);
      if (result.code !== 0) throw failure('qstat', result);
      // An empty queue may come as an empty document or as empty queue_info/job_info.
      if (result.stdout.trim() !== '' && !result.stdout.includes('<job_info')) {
        throw new GridUnavailableError(`qstat gave no XML job list (output: ${JSON.stringify(result.stdout.slice(0, 200))})`);
      }
      const queue = parseQstatXml(result.stdout);
      for (const ref of jobs) {
        const entry = queue.get(ref.jobId);
        if (entry !== undefined) {
          answer.set(ref.jobId, sgeQueueState(entry));
          continue;
        }
        const wrapper = await readWrapperStatus(ref.statusPath);
        if (wrapper?.exit !== undefined) {
          answer.set(ref.jobId, { state: 'done', exitCode: wrapper.exit, host: wrapper.host });
          continue;
        }
        // qacct scans the whole accounting file: only while the pass has time left.
        if (budgetUsed(options)) {
          answer.set(ref.jobId, NOT_LOOKED_AT);
          continue;
        }
        const record = await qacct(ref.jobId);
        answer.set(ref.jobId, record === undefined ? stateFromWrapper(wrapper, 'Grid Engine') : sgeFinishedState(record, wrapper));
      }
      return answer;
    },

    async cancel(jobIds: readonly string[]): Promise<void> {
      if (jobIds.length === 0) return;
      const result = await sge(['qdel', ...jobIds]);
      if (result.code === 0) return;
      // qdel reports each id on its own line; only complaints about vanished jobs are tolerated.
      const complaints = `${result.stdout}\n${result.stderr}`
        .split('\n')
        .filter((line) => line.trim() !== '' && !/has (registered|deleted)|for deletion/.test(line));
      if (complaints.length > 0 && complaints.every((line) => NOT_FOUND.test(line))) return;
      throw failure('qdel', result);
    },

    canReach(): boolean {
      return true;
    },
  };
}
