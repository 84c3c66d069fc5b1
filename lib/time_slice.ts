/**
 * Long loops on the main thread (reading a 100 MB header, listing a million
 * entries) hand the event loop a turn every few milliseconds, so timers,
 * signals and progress output stay responsive.
 */
export class TimeSlicer {
  private t0 = performance.now();
  constructor(private readonly sliceMs = 5) {}

  /** True when the current slice is used up (then `await turn()`). */
  due(): boolean {
    return performance.now() - this.t0 > this.sliceMs;
  }

  /** Yields to the event loop once, then starts a new slice. */
  async turn(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.t0 = performance.now();
  }

  /** Yields if the slice is used up; cheap enough to call every few thousand steps. */
  async maybe(): Promise<void> {
    if (this.due()) await this.turn();
  }
}
