/** Progress of a long operation, reported through a user callback. */

export interface Progress {
  /** The pass under way ("merge", "threshold", "compress"...). */
  phase: string;
  key?: string;
  tensorsDone: number;
  tensorsTotal: number;
  bytesDone: number;
  bytesTotal: number;
  elapsedMs: number;
}

export class ProgressTracker {
  private state: Progress = { phase: "", tensorsDone: 0, tensorsTotal: 0, bytesDone: 0, bytesTotal: 0, elapsedMs: 0 };
  private readonly start = Date.now();
  /** Bytes read from input files over all phases. */
  bytesRead = 0;

  constructor(private readonly onProgress?: (p: Progress) => void) {}

  phase(name: string, tensorsTotal: number, bytesTotal: number): void {
    this.state = { phase: name, tensorsDone: 0, tensorsTotal, bytesDone: 0, bytesTotal, elapsedMs: this.elapsed() };
    this.emit();
  }

  /** Records bytes of input consumed by the current phase. */
  bytes(n: number, key?: string): void {
    this.bytesRead += n;
    this.state.bytesDone += n;
    if (key) this.state.key = key;
    this.emit();
  }

  tensorDone(key: string): void {
    this.state.tensorsDone++;
    this.state.key = key;
    this.emit();
  }

  private elapsed(): number {
    return Date.now() - this.start;
  }

  private emit(): void {
    if (!this.onProgress) return;
    this.state.elapsedMs = this.elapsed();
    this.onProgress({ ...this.state });
  }
}
