/**
 * Pure text helpers for the live display. Everything here returns plain
 * strings of a known width so the layout can count columns and lines exactly:
 * the dashboard must never grow taller than the terminal (Ink then clears the
 * scrollback), so no helper may produce text that wraps unexpectedly.
 */

const pad2 = (n: number): string => String(n).padStart(2, '0');

/**
 * A compact duration a shifter reads at a glance: `45s`, `12m05s`, `3h12m`,
 * `2d04h`. Two units at most; the seconds stop mattering after an hour.
 * Negative or non-finite input (clock skew between hosts) is shown as `0s`.
 */
export function formatDuration(seconds: number): string {
  const s = Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad2(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad2(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${pad2(Math.floor((s % 86_400) / 3600))}h`;
}

/** How long ago `then` was, seen from `now` (both epoch ms), as a duration. */
export function formatAge(then: number, now: number): string {
  return formatDuration((now - then) / 1000);
}

/** Local wall-clock time `HH:MM:SS`: events and "since" are read against the shifter's clock. */
export function formatClock(at: number): string {
  const d = new Date(at);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** Binary units, because quotas and `df -h` on the cluster use them: `1.2 GiB`, `512 B`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '? B';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  // One decimal below 100 keeps the width steady while a download ticks up.
  return `${value < 100 ? value.toFixed(1) : Math.round(value).toString()} ${BYTE_UNITS[unit]}`;
}

/** A transfer rate: `12.3 MiB/s`. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** Time left, or `?` when the loop cannot estimate it yet (no finished runs in the window). */
export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  return formatDuration(seconds);
}

/** A percentage with no decimals, clamped to 0-100: bars and limits share it. */
export function formatPercent(fraction: number): string {
  return `${Math.round(clamp01(fraction) * 100)}%`;
}

function clamp01(x: number): number {
  if (!Number.isFinite(x) || x < 0) return 0;
  return x > 1 ? 1 : x;
}

export const BAR_FULL = '█';
export const BAR_EMPTY = '░';

/**
 * A bar of exactly `width` characters filled to `fraction` (0-1). A started
 * but tiny fraction still shows one cell, and an unfinished one never shows
 * full, so "almost done" and "done" stay distinguishable.
 */
export function textBar(fraction: number, width: number, full = BAR_FULL, empty = BAR_EMPTY): string {
  const w = Math.max(0, Math.floor(width));
  const f = clamp01(fraction);
  let filled = Math.round(f * w);
  if (f > 0 && filled === 0 && w > 0) filled = 1;
  if (f < 1 && filled === w && w > 1) filled = w - 1;
  return full.repeat(filled) + empty.repeat(w - filled);
}

/** Cut `text` to at most `width` characters, marking the cut with `…`. */
export function truncate(text: string, width: number): string {
  const w = Math.max(0, Math.floor(width));
  // Array.from counts code points, so a cut never splits a surrogate pair.
  const chars = Array.from(text);
  if (chars.length <= w) return text;
  if (w === 0) return '';
  if (w === 1) return '…';
  return chars.slice(0, w - 1).join('') + '…';
}

/** Truncate, then pad on the right (or left with `align: 'right'`) to exactly `width`. */
export function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  const cut = truncate(text, width);
  const missing = Math.max(0, Math.floor(width) - Array.from(cut).length);
  return align === 'left' ? cut + ' '.repeat(missing) : ' '.repeat(missing) + cut;
}

/** The first eight characters of a session id: enough to tell sessions apart on screen. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** A thousands-separated count, locale-independent so screenshots and tests agree: `12,345`. */
export function formatCount(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
