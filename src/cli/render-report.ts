import { markdownTable, textTable, type Cell } from './table.js';
import { formatBytes, formatDuration } from '../display/format.js';
import type { FailureGroup, Report } from '../admin/report.js';

/** The close-out report as text for the terminal or as markdown for the production logbook. */

type Style = 'text' | 'markdown';

const pct = (n: number | null) => (n === null ? '-' : `${n}%`);
const when = (iso: string | null) => (iso ? iso.slice(0, 16).replace('T', ' ') + ' UTC' : '-');
const runList = (runs: readonly number[], max = 12) => (runs.length > max ? `${runs.slice(0, max).join(', ')}, … (${runs.length})` : runs.join(', '));
const oneLine = (text: string | null, max = 100) => {
  const line = (text ?? '').split('\n')[0]!;
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

export function renderReport(report: Report, style: Style): string {
  const table = (header: string[], rows: Cell[][], right: number[]) =>
    style === 'markdown' ? markdownTable(header, rows) : textTable(header, rows, { rightAlign: right });
  const heading = (text: string, level = 2) => (style === 'markdown' ? `${'#'.repeat(level)} ${text}` : `${text}\n${'-'.repeat(text.length)}`);
  const p = report.production;
  const out: string[] = [];
  out.push(
    style === 'markdown'
      ? `# Production report: ${p.type} v${p.version} (tag ${p.tag})`
      : `Production report: ${p.type} v${p.version} (tag ${p.tag})\n${'='.repeat(40)}`,
  );
  const bullet = style === 'markdown' ? '- ' : '  ';
  const r = report.runs;
  const j = report.jobs;
  out.push(
    [
      `${bullet}Status: ${p.status}${p.statusReason ? ` (${p.statusReason})` : ''}`,
      `${bullet}Created by ${p.createdBy} on ${when(p.startedAt)}${p.stoppedAt ? `, closed ${when(p.stoppedAt)}` : ''}`,
      `${bullet}Runs processed: ${r.finished} of ${r.requested} requested (${r.percentFinished}%); ${r.failed} failed, ${r.remaining} not done`,
      `${bullet}Jobs run: ${j.run} (${j.finished} finished, ${j.failed} failed); exit code 0: ${j.exitZero} (${pct(j.exitZeroPercent)}); attempt success rate ${pct(j.successPercent)}; max attempts ${p.maxAttempts}`,
      `${bullet}Data: ${formatBytes(report.data.inputBytes)} in (${report.data.inputBytes} bytes), ${formatBytes(report.data.outputBytes)} out (${report.data.outputBytes} bytes)`,
      `${bullet}Time: first claim ${when(report.time.firstClaim)}, last finish ${when(report.time.lastFinish)}` +
        (report.time.spanSeconds !== null ? `, span ${formatDuration(report.time.spanSeconds)}` : '') +
        (report.time.runsPerHour !== null ? `, ${report.time.runsPerHour} runs/h` : ''),
    ].join('\n'),
  );

  out.push(heading('Datasets'));
  out.push(
    table(
      ['dataset', 'requested', 'finished', 'failed', '%'],
      report.datasets.map((d) => [d.dataset, d.total, d.finished, d.failed, `${d.percentFinished}%`]),
      [1, 2, 3, 4],
    ),
  );

  const failureTable = (title: string, keyName: string, groups: FailureGroup[], key: (g: FailureGroup) => string) => {
    out.push(heading(title));
    if (groups.length === 0) {
      out.push('No failed job attempts.');
      return;
    }
    out.push(
      table(
        [keyName, 'attempts', 'runs', 'failed now', 'last error'],
        groups.map((g) => [key(g), g.attempts, runList(g.runs), runList(g.runsFailedNow), oneLine(g.lastError)]),
        [1],
      ),
    );
  };
  failureTable('Failures by exit code', 'exit code', report.failures.byExitCode, (g) => (g.key === null ? 'lost' : String(g.key)));
  failureTable('Failures by host', 'host', report.failures.byHost, (g) => (g.key === null ? 'unknown' : String(g.key)));

  out.push(heading('Shifters'));
  out.push(
    report.operators.length === 0
      ? 'No sessions.'
      : table(
          ['user', 'sessions', 'online', 'claimed', 'finished', 'jobs failed', 'rolled back'],
          report.operators.map((o) => [o.user, o.sessions, formatDuration(o.onlineSeconds), o.runsClaimed, o.runsFinished, o.jobsFailed, o.runsRolledBack]),
          [1, 2, 3, 4, 5, 6],
        ),
  );
  return out.join('\n\n') + '\n';
}
