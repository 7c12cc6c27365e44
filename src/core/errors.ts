/**
 * Errors a shifter can cause and fix (bad CSV line, bad config field, unknown
 * production, unreachable database). The CLI prints their message on one line,
 * without a stack trace, and exits with their code.
 */
export class ExpectedError extends Error {
  override readonly name = 'ExpectedError';
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
  }
}

/** Exit codes, from sysexits where one fits. */
export const EXIT = {
  ok: 0,
  error: 1,
  unreachable: 2,
  usage: 64,
  data: 65,
  /** A file or directory this account cannot create (sysexits EX_CANTCREAT). */
  cantCreate: 73,
  sighup: 129,
  sigint: 130,
  sigterm: 143,
} as const;
