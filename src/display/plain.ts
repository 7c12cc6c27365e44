import type { LoopLine } from '../session/snapshot.js';
import { printableLogText } from '../core/sanitize.js';

/**
 * The plain log: one line per event, as shifters know them from
 * run_production.py. Used with --plain, when stdout is not a terminal, and by
 * the tests. A write to a terminal that went away (SIGHUP) must not crash the
 * rollback, so write errors are swallowed. Texts carry what others wrote (job
 * stderr, pause reasons, tags): control characters are shown as escapes, and the
 * lines after the first of a multi-line text are indented (src/core/sanitize.ts).
 */
export function attachPlainLog(source: { onLine(listener: (line: LoopLine) => void): () => void }, stream: NodeJS.WritableStream = process.stdout): () => void {
  stream.on('error', () => undefined);
  return source.onLine((line) => {
    const stamp = process.env.RUN_PRODUCTION_LOG_TIMES ? `${new Date().toISOString()} ` : '';
    try {
      stream.write(`${stamp}${printableLogText(line.text)}\n`);
    } catch {
      /* terminal gone */
    }
  });
}
