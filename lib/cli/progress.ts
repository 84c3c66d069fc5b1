/** Progress display: a bar on a terminal, plain periodic lines otherwise, nothing with --quiet. */
import { SingleBar, Presets } from "cli-progress";
import type { Progress } from "../engine/progress";
import { formatBytes } from "../units";

export interface ProgressView {
  update(p: Progress): void;
  stop(): void;
}

export function createProgressView(opts: { quiet?: boolean; stream?: NodeJS.WriteStream }): ProgressView {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { update() {}, stop() {} };
  return stream.isTTY ? new BarView(stream) : new LineView(stream);
}

function rate(p: Progress): string {
  const s = p.elapsedMs / 1000;
  return s > 0 ? `${formatBytes(p.bytesDone / s)}/s` : "";
}

class BarView implements ProgressView {
  private bar: SingleBar;
  private phase = "";

  constructor(stream: NodeJS.WriteStream) {
    this.bar = new SingleBar(
      {
        stream,
        format: "{phase} [{bar}] {percentage}% | {tensors} tensors | {bytes} | {rate} | ETA {eta_formatted}",
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
        fps: 5,
      },
      Presets.shades_classic,
    );
  }

  update(p: Progress): void {
    const payload = {
      phase: p.phase.padEnd(9),
      tensors: `${p.tensorsDone}/${p.tensorsTotal}`,
      bytes: `${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}`,
      rate: rate(p),
    };
    if (p.phase !== this.phase) {
      if (this.phase) this.bar.stop();
      this.phase = p.phase;
      this.bar.start(Math.max(1, p.bytesTotal), p.bytesDone, payload);
    } else this.bar.update(p.bytesDone, payload);
  }

  stop(): void {
    if (this.phase) this.bar.stop();
  }
}

class LineView implements ProgressView {
  private last = 0;
  private phase = "";

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(p: Progress): void {
    const now = Date.now();
    const done = p.tensorsDone === p.tensorsTotal;
    if (p.phase === this.phase && !done && now - this.last < 2000) return;
    this.phase = p.phase;
    this.last = now;
    const pct = p.bytesTotal ? ((100 * p.bytesDone) / p.bytesTotal).toFixed(1) : "100.0";
    this.stream.write(
      `${p.phase}: ${pct}% ${p.tensorsDone}/${p.tensorsTotal} tensors, ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}, ${rate(p)}\n`,
    );
  }

  stop(): void {}
}
