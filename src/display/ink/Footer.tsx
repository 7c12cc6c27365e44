import type { Snapshot } from '../../session/snapshot.js';
import { Lines, type SegLine } from './theme.js';

function key(k: string, what: string): SegLine {
  return [{ text: k, bold: true, inverse: true }, { text: ` ${what}  ` }];
}

/**
 * One row: the keys, or why there are none. During an abort keys would only
 * confuse (the rollback runs either way), so the row says what is happening.
 */
export function footerLine(snapshot: Snapshot, keysEnabled: boolean): SegLine {
  if (snapshot.abort !== null) {
    return snapshot.abort.done
      ? [{ text: 'Abort finished.', bold: true }]
      : [{ text: 'Aborting: cancelling jobs and rolling back runs. Please wait.', bold: true, tone: 'red' }];
  }
  if (!keysEnabled) {
    return [{ text: 'keys disabled: stdin is not a terminal', tone: 'yellow' }, { text: '  (SIGUSR1 drains)', dim: true }];
  }
  const s = snapshot.session;
  return [
    ...key('d', 'drain'),
    ...key('p', s.claimingPaused ? 'resume claiming' : 'pause claiming'),
    ...key('q', 'quit (= drain)'),
    ...key('Ctrl-C', 'abort (rollback)'),
  ];
}

export function Footer({ snapshot, keysEnabled, width }: { snapshot: Snapshot; keysEnabled: boolean; width: number }) {
  return <Lines lines={[footerLine(snapshot, keysEnabled)]} width={width} />;
}
