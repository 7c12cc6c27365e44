import type { Snapshot } from '../../session/snapshot.js';
import { needsEscaping, printableLine } from '../../core/sanitize.js';

/**
 * The snapshot with every text that someone else wrote (event texts, banner messages, the pause
 * reason, tags, dataset names, job ids, user and host names, the abort note) made printable, once,
 * before the layout counts columns: the display then measures exactly what it draws. Objects
 * without anything to escape are kept as they are (no copy per frame); the result of the last
 * snapshot is remembered, since the display draws the same snapshot several times a second.
 */
const cache = new WeakMap<Snapshot, Snapshot>();

const clean = (text: string): string => (needsEscaping(text) ? printableLine(text) : text);
const cleanOrNull = (text: string | null): string | null => (text === null ? null : clean(text));

function mapIfChanged<T>(items: readonly T[], map: (item: T) => T): T[] {
  let changed = false;
  const out = items.map((item) => {
    const next = map(item);
    if (next !== item) changed = true;
    return next;
  });
  return changed ? out : (items as T[]);
}

function withText<T extends object>(item: T, fields: { [K in keyof T]?: T[K] }): T {
  for (const key of Object.keys(fields) as (keyof T)[]) {
    if (fields[key] !== item[key]) return { ...item, ...fields };
  }
  return item;
}

export function printableSnapshot(snapshot: Snapshot): Snapshot {
  const cached = cache.get(snapshot);
  if (cached) return cached;
  const p = snapshot.production;
  const s = snapshot.session;
  const datasets = Object.keys(snapshot.datasets).some(needsEscaping)
    ? Object.fromEntries(Object.entries(snapshot.datasets).map(([name, counts]) => [clean(name), counts]))
    : snapshot.datasets;
  const safe: Snapshot = withText(snapshot, {
    production: withText(p, { type: clean(p.type), tag: clean(p.tag), statusReason: cleanOrNull(p.statusReason) }),
    database: clean(snapshot.database),
    session: withText(s, { user: clean(s.user), host: clean(s.host) }),
    datasets,
    limits: withText(snapshot.limits, {
      downloadsPausedReason: cleanOrNull(snapshot.limits.downloadsPausedReason),
      disk: withText(snapshot.limits.disk, { source: clean(snapshot.limits.disk.source) }),
    }),
    runs: mapIfChanged(snapshot.runs, (r) => withText(r, { dataset: clean(r.dataset), jobId: cleanOrNull(r.jobId) })),
    sessions: mapIfChanged(snapshot.sessions, (o) => withText(o, { user: clean(o.user), host: clean(o.host) })),
    events: mapIfChanged(snapshot.events, (e) => withText(e, { text: clean(e.text) })),
    alerts: mapIfChanged(snapshot.alerts, (a) => withText(a, { message: clean(a.message) })),
    abort:
      snapshot.abort === null
        ? null
        : withText(snapshot.abort, {
            reason: clean(snapshot.abort.reason),
            note: cleanOrNull(snapshot.abort.note),
            cancelledJobs: mapIfChanged(snapshot.abort.cancelledJobs, clean),
          }),
  });
  cache.set(snapshot, safe);
  return safe;
}
