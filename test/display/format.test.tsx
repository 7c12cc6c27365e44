import { describe, expect, test } from 'vitest';
import {
  fit,
  formatAge,
  formatBytes,
  formatCount,
  formatDuration,
  formatEta,
  formatPercent,
  formatRate,
  textBar,
  truncate,
} from '../../src/display/format.js';

describe('format', () => {
  test('durations use at most two units', () => {
    expect(formatDuration(45)).toBe('45s');
    expect(formatDuration(12 * 60 + 5)).toBe('12m05s');
    expect(formatDuration(3 * 3600 + 12 * 60 + 59)).toBe('3h12m');
    expect(formatDuration(2 * 86_400 + 4 * 3600)).toBe('2d04h');
    // Clock skew between hosts must not print "-3s".
    expect(formatDuration(-3)).toBe('0s');
    expect(formatDuration(Number.NaN)).toBe('0s');
  });

  test('ages are durations between two instants', () => {
    expect(formatAge(1_000, 46_000)).toBe('45s');
  });

  test('bytes and rates in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1.2 * 2 ** 30)).toBe('1.2 GiB');
    expect(formatBytes(300 * 2 ** 20)).toBe('300 MiB');
    expect(formatRate(12.3 * 2 ** 20)).toBe('12.3 MiB/s');
  });

  test('ETA is ? when unknown', () => {
    expect(formatEta(null)).toBe('?');
    expect(formatEta(3 * 3600 + 12 * 60)).toBe('3h12m');
  });

  test('bars have exactly the width asked for', () => {
    expect(textBar(0, 10)).toBe('░'.repeat(10));
    expect(textBar(1, 10)).toBe('█'.repeat(10));
    expect(textBar(0.5, 10)).toBe('█'.repeat(5) + '░'.repeat(5));
    // Started shows something, unfinished never looks finished.
    expect(textBar(0.001, 10)).toBe('█' + '░'.repeat(9));
    expect(textBar(0.999, 10)).toBe('█'.repeat(9) + '░');
    expect(textBar(7, 4)).toBe('████');
    expect(formatPercent(0.274)).toBe('27%');
  });

  test('truncation and fitting', () => {
    expect(truncate('merlin-l-01.psi.ch', 8)).toBe('merlin-…');
    expect(truncate('short', 8)).toBe('short');
    expect(fit('42', 5, 'right')).toBe('   42');
    expect(fit('dataset-name', 5)).toBe('data…');
    expect(formatCount(1234567)).toBe('1,234,567');
  });
});
