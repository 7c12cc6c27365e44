import { afterEach, expect, test, vi } from 'vitest';

// Ink's chalk decides its colour level when first imported, and the test's
// stdout is no terminal: force colour so "no colour" below is a real check.
vi.hoisted(() => {
  process.env['FORCE_COLOR'] = '1';
});

import { cleanup, render } from 'ink-testing-library';
import { Dashboard } from '../../src/display/ink/Dashboard.js';
import { pausedSnapshot } from './snapshots.js';

/** SGR foreground/background colour codes (30-49, 90-107), not bold or inverse. */
const COLOR_SGR = /\u001b\[(?:3\d|4\d|9[0-7]|10[0-7])(?:;\d+)*m/;

afterEach(() => {
  cleanup();
  vi.unstubAllEnvs();
});

test('colour by default', () => {
  vi.stubEnv('NO_COLOR', '');
  const { lastFrame } = render(<Dashboard snapshot={pausedSnapshot()} columns={80} rows={24} />);
  expect(lastFrame()).toMatch(COLOR_SGR);
});

test('NO_COLOR turns colour off but keeps every word', () => {
  vi.stubEnv('NO_COLOR', '1');
  const { lastFrame } = render(<Dashboard snapshot={pausedSnapshot()} columns={80} rows={24} />);
  const out = lastFrame() ?? '';
  expect(out).not.toMatch(COLOR_SGR);
  // Bold and inverse stay (they are not colour); the words are all there without them.
  // eslint-disable-next-line no-control-regex
  const plain = out.replace(/\u001b\[[\d;]*m/g, '');
  expect(plain).toContain('PRODUCTION PAUSED');
  expect(plain).toContain('R running');
});
