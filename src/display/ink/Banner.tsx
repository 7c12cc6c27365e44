import type { Snapshot, SnapshotAlert } from '../../session/snapshot.js';
import { formatAge, formatClock } from '../format.js';
import { Lines, packSegs, type SegLine, type Tone } from './theme.js';

/** A banner: an alert from the loop, or one the display derives from the snapshot. */
interface BannerItem {
  label: string;
  tone: Tone;
  message: string;
  since: number | null;
}

const ALERT_STYLE: Record<SnapshotAlert['kind'], { label: string; tone: Tone }> = {
  'production-paused': { label: 'PRODUCTION PAUSED', tone: 'yellow' },
  'backend-failing': { label: 'BACKEND FAILING', tone: 'red' },
  'archive-failing': { label: 'ARCHIVE FAILING', tone: 'red' },
  'staging-failing': { label: 'STAGING AREA FAILING', tone: 'red' },
  'outputs-failing': { label: 'OUTPUT AREA FAILING', tone: 'red' },
  'scheduler-slow': { label: 'SCHEDULER COMMAND HANGING', tone: 'yellow' },
  'session-stuck': { label: 'SESSION STUCK', tone: 'red' },
  'archive-auth': { label: 'ARCHIVE AUTH', tone: 'red' },
  'database-unreachable': { label: 'DATABASE UNREACHABLE', tone: 'red' },
  draining: { label: 'DRAINING', tone: 'cyan' },
};

/**
 * Alerts first as the loop sent them, then what the snapshot implies but the
 * loop may not have raised as an alert: a paused production (from its status
 * and reason), this session draining, claiming paused with `p`. Red ones
 * first, because they are the ones that need a human now.
 */
export function bannerItems(snapshot: Snapshot): BannerItem[] {
  const items: BannerItem[] = snapshot.alerts.map((a) => ({ ...ALERT_STYLE[a.kind], message: a.message, since: a.since }));
  const has = (kind: SnapshotAlert['kind']) => snapshot.alerts.some((a) => a.kind === kind);
  const p = snapshot.production;
  if (p.status === 'paused' && !has('production-paused')) {
    items.push({ ...ALERT_STYLE['production-paused'], message: p.statusReason ?? 'no reason given', since: p.statusSince });
  }
  if (snapshot.session.draining && !has('draining')) {
    items.push({ ...ALERT_STYLE.draining, message: 'no new claims; waiting for jobs on the grid, then exit', since: null });
  }
  if (snapshot.session.claimingPaused && !snapshot.session.draining) {
    items.push({ label: 'CLAIMING PAUSED', tone: 'yellow', message: 'this session claims no new runs (p resumes)', since: null });
  }
  const rank = (t: Tone) => (t === 'red' ? 0 : t === 'yellow' ? 1 : 2);
  return items.map((item, i) => ({ item, i })).sort((a, b) => rank(a.item.tone) - rank(b.item.tone) || a.i - b.i).map(({ item }) => item);
}

/** Rows one banner may take: enough for a reason with an elog reference, not enough to push the runs away. */
const ROWS_PER_BANNER = 2;

/** A banner as rows: label, since when, then the message word-wrapped. */
function bannerRows(b: BannerItem, now: number, width: number): SegLine[] {
  const items: SegLine[] = [[{ text: ` ${b.label} `, tone: b.tone, bold: true, inverse: true }]];
  if (b.since !== null) items.push([{ text: `since ${formatClock(b.since)} (${formatAge(b.since, now)} ago)`, bold: true }]);
  for (const word of b.message.split(/\s+/).filter(Boolean)) items.push([{ text: word, tone: b.tone }]);
  return packSegs(items, width, 1).slice(0, ROWS_PER_BANNER);
}

/**
 * The banners in at most `maxLines` rows, most urgent first; when they do not
 * all fit, the last row says how many more there are.
 */
export function bannerLines(snapshot: Snapshot, now: number, width: number, maxLines: number): SegLine[] {
  const items = bannerItems(snapshot);
  if (maxLines <= 0 || items.length === 0) return [];
  const rows = items.map((b) => bannerRows(b, now, width));
  const total = rows.reduce((n, r) => n + r.length, 0);
  if (total <= maxLines) return rows.flat();
  const lines: SegLine[] = [];
  let shown = 0;
  // Keep one row for the "+N more" note; a banner that does not fit whole gets its first row.
  for (const r of rows) {
    if (lines.length >= maxLines - 1) break;
    lines.push(...r.slice(0, maxLines - 1 - lines.length));
    shown += 1;
  }
  const more = items.length - shown;
  if (more > 0) lines.push([{ text: `+${more} more alert${more === 1 ? '' : 's'}`, bold: true, tone: 'red' }]);
  return lines.slice(0, maxLines);
}

/** Rows all banners would take at this width. */
export function bannerWanted(snapshot: Snapshot, now: number, width: number): number {
  return bannerLines(snapshot, now, width, Number.MAX_SAFE_INTEGER).length;
}

export function Banner({ snapshot, now, width, maxLines }: { snapshot: Snapshot; now: number; width: number; maxLines: number }) {
  return <Lines lines={bannerLines(snapshot, now, width, maxLines)} width={width} />;
}
