/**
 * Downloads that failed through no fault of their runs (the archive is gone or silent, the staging
 * disk is full or read-only), counted in a row. The loop stops starting downloads until `retryAt`,
 * backing off as the streak grows, and pauses the production once it reaches the configured limit;
 * a download that arrives ends the streak.
 */
export interface FaultStreak {
  readonly where: 'archive' | 'staging';
  readonly error: string;
  /** Consecutive failures, this one included. */
  readonly count: number;
  readonly since: number;
  /** No new download before this time (epoch ms). */
  readonly retryAt: number;
}

/** Seconds before downloads are tried again after the n-th failure in a row: 2, 4, 8 ... at most 60. */
export function backoffSeconds(count: number): number {
  return Math.min(2 ** count, 60);
}

export function withFault(streak: FaultStreak | null, where: FaultStreak['where'], error: string, now = Date.now()): FaultStreak {
  const count = (streak?.count ?? 0) + 1;
  return { where, error, count, since: streak?.since ?? now, retryAt: now + backoffSeconds(count) * 1000 };
}

/** What the banner says while the streak lasts. */
export function describeFault(streak: FaultStreak, now = Date.now()): string {
  const what = streak.where === 'archive' ? 'Archive unreachable' : 'Staging area not writable';
  const wait = Math.max(Math.ceil((streak.retryAt - now) / 1000), 0);
  return `${what} (${streak.count} download${streak.count === 1 ? '' : 's'} in a row, no attempt counted): ${streak.error}; downloads paused, retrying in ${wait}s`;
}
