/**
 * Where a run's raw input comes from. The loop resolves the production's
 * `input.source` template for a run to a URL (file:///..., /plain/path or
 * sftp://user@host:port/path) and asks the matching archive to copy it to a
 * temporary path inside the staging area. Verifying the size and checksum,
 * renaming into place and retrying are the loop's job, not the archive's.
 */

export interface FetchRequest {
  /** Run number, for messages. */
  run: number;
  /** Resolved source URL of the input file. */
  url: URL;
  /** Temporary local path to write to; the loop renames it once verified. */
  destination: string;
  /** Size from the catalogue, when known. */
  expectedBytes?: number;
  /** Called as bytes arrive (at most a few times a second is enough). */
  onProgress?: (bytesDone: number, bytesTotal: number | undefined) => void;
  /** Aborted when the session aborts or the download times out. */
  signal: AbortSignal;
}

export interface FetchResult {
  bytes: number;
}

export interface Archive {
  /** URL scheme it serves, e.g. `file` or `sftp`. */
  readonly scheme: string;
  /** How many downloads the loop may run at once through this archive. */
  readonly parallel: number;
  /** Size of the remote file, without downloading it. Throws MissingInputError when it does not exist. */
  size(url: URL, signal: AbortSignal): Promise<number>;
  fetch(request: FetchRequest): Promise<FetchResult>;
  /** Release connections; called once when the session ends. */
  close(): Promise<void>;
}

/** The input file does not exist in the archive: the run goes back to `new` with this error (then `failed`). */
export class MissingInputError extends Error {
  override readonly name = 'MissingInputError';
}

/**
 * The archive itself cannot be reached: its root is gone (an unmounted file system), or its server
 * does not answer. Not the run's fault: downloads pause and retry; no attempt is counted.
 */
export class ArchiveUnavailableError extends Error {
  override readonly name = 'ArchiveUnavailableError';
}

/** Credentials were refused: stop starting new downloads and tell the shifter. */
export class ArchiveAuthError extends Error {
  override readonly name = 'ArchiveAuthError';
}

/** Anything else that may pass: dropped connection, timeout. Retried with backoff. */
export class ArchiveTransientError extends Error {
  override readonly name = 'ArchiveTransientError';
}
