/**
 * The `archive` section of a production type, as config validation produces it and
 * productions.config freezes it. It lives with the archives, which it configures, so that
 * src/config imports it and the archives never import the config.
 */

export interface ArchiveOptions {
  /** Downloads at once (default 2). */
  parallel: number;
  /** Command run with the list of files about to be fetched (tape-backed archives). */
  prestage: string | null;
  /** Seconds without progress before a download is abandoned and retried. */
  timeoutSeconds: number;
  /** Download tries before the run goes back to `new` with the error. */
  retries: number;
  /**
   * Bytes reserved in the staging area for a run whose catalogue entry has no size (default 1 GiB),
   * so that such downloads cannot overfill it. Absent from configs frozen before it existed.
   */
  defaultBytes?: number;
}

/** Reservation for a run without a catalogue size, when the config does not say. */
export const DEFAULT_INPUT_BYTES = 2 ** 30;
