/**
 * When the loop's passes run: every `pauseMs`, and at once when asked (a download or a job ended),
 * never two at a time. A pass asked for while one runs follows right after it.
 */
export class PassTimer {
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<void> | null = null;
  private again = false;
  /** When the next timed pass is due (epoch ms), for the display's countdown. */
  nextAt = Date.now();

  constructor(
    private readonly pauseMs: number,
    private readonly hooks: {
      /** Whether passes may still run (not once the session stops or aborts). */
      active(): boolean;
      pass(): Promise<void>;
      /** The pass threw. */
      failed(error: unknown): void | Promise<void>;
      /** After every pass, thrown or not. */
      ended(): void;
      /** A timed pass was scheduled. */
      scheduled(): void;
    },
  ) {}

  /** The pass under way, if any (settled, never rejecting). */
  get running(): Promise<void> | null {
    return this.current;
  }

  /** Run a pass now, or right after the current one. */
  request(): void {
    if (!this.hooks.active()) return;
    if (this.current) {
      this.again = true;
      return;
    }
    this.cancel();
    this.current = this.hooks
      .pass()
      .catch((error: unknown) => this.hooks.failed(error))
      .finally(() => {
        this.current = null;
        this.hooks.ended();
        if (!this.hooks.active()) return;
        if (this.again) {
          this.again = false;
          this.request();
          return;
        }
        this.nextAt = Date.now() + this.pauseMs;
        this.timer = setTimeout(() => this.request(), this.pauseMs);
        this.hooks.scheduled();
      });
  }

  /** No more timed passes (one under way goes on). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
