/** Progress display: a bar on a terminal, plain periodic lines otherwise, nothing with --quiet. */
import { SingleBar, Presets } from "cli-progress";
import type { Progress } from "../engine/progress";
import { formatBytes } from "../units";
import { envNumber } from "../env";

export interface ProgressView {
  update(p: Progress): void;
  stop(): void;
}

/** Seconds between plain progress lines (TASKMERGE_PROGRESS_INTERVAL overrides, for logs that want more or fewer). */
const lineIntervalMs = () => 1000 * (envNumber("TASKMERGE_PROGRESS_INTERVAL") ?? 5);

export function createProgressView(opts: { quiet?: boolean; stream?: NodeJS.WriteStream }): ProgressView {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { update() {}, stop() {} };
  return stream.isTTY ? new BarView(stream) : new LineView(stream);
}

/** Rate and ETA over the current phase (a preparation pass and the merge pass run at different speeds). */
class PhaseClock {
  private phase = "";
  private startMs = 0;
  private startBytes = 0;

  /** Returns true when `p` starts a new phase. */
  see(p: Progress): boolean {
    if (p.phase === this.phase) return false;
    this.phase = p.phase;
    this.startMs = p.elapsedMs;
    this.startBytes = p.bytesDone;
    return true;
  }

  rate(p: Progress): number {
    const s = (p.elapsedMs - this.startMs) / 1000;
    return s > 0 ? Math.round((p.bytesDone - this.startBytes) / s) : 0;
  }

  eta(p: Progress): string {
    const r = this.rate(p);
    if (!r || p.bytesDone >= p.bytesTotal) return p.bytesDone >= p.bytesTotal ? "0s" : "?";
    return formatSeconds((p.bytesTotal - p.bytesDone) / r);
  }
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, "0")}m`;
}

class BarView implements ProgressView {
  private readonly bar: SingleBar;
  private readonly clock = new PhaseClock();
  private started = false;

  constructor(stream: NodeJS.WriteStream) {
    this.bar = new SingleBar(
      {
        stream,
        format: "{phase} [{bar}] {percentage}% | {tensors} tensors | {bytes} | {rate} | ETA {etaText}",
        hideCursor: true,
        clearOnComplete: false,
        fps: 5,
      },
      Presets.shades_classic,
    );
  }

  update(p: Progress): void {
    const fresh = this.clock.see(p);
    const payload = {
      phase: p.phase.padEnd(9),
      tensors: `${p.tensorsDone}/${p.tensorsTotal}`,
      bytes: `${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}`,
      rate: `${formatBytes(this.clock.rate(p))}/s`,
      etaText: this.clock.eta(p),
    };
    if (fresh) {
      // Each phase gets its own bar line; the finished one stays on screen.
      if (this.started) this.bar.stop();
      this.started = true;
      this.bar.start(Math.max(1, p.bytesTotal), p.bytesDone, payload);
    } else this.bar.update(p.bytesDone, payload);
  }

  stop(): void {
    if (this.started) this.bar.stop();
    this.started = false;
  }
}

class LineView implements ProgressView {
  private last = 0;
  private readonly clock = new PhaseClock();
  private lastDone = -1;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(p: Progress): void {
    const now = Date.now();
    const fresh = this.clock.see(p);
    if (fresh) this.lastDone = -1;
    const done = p.tensorsDone === p.tensorsTotal;
    // A line when a phase starts, when it ends, and every interval in between.
    if (!fresh && !(done && this.lastDone !== p.tensorsDone) && now - this.last < lineIntervalMs()) return;
    if (done) this.lastDone = p.tensorsDone;
    this.last = now;
    const pct = p.bytesTotal ? ((100 * p.bytesDone) / p.bytesTotal).toFixed(1) : "100.0";
    this.stream.write(
      `${p.phase}: ${pct}% | ${p.tensorsDone}/${p.tensorsTotal} tensors | ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)} | ` +
        `${formatBytes(this.clock.rate(p))}/s | ETA ${this.clock.eta(p)}\n`,
    );
  }

  stop(): void {}
}
