/**
 * The plain-line progress view (what logs and CI see): a line when a phase
 * starts, one per interval, one when it ends; rate and ETA over the phase.
 * The terminal bar is covered through a pseudo-terminal in cli.test.ts.
 */
import { createProgressView, formatSeconds } from "../lib/cli/progress";
import type { Progress } from "../lib/engine/progress";

function fakeStream(tty: boolean) {
  const lines: string[] = [];
  return { lines, stream: { isTTY: tty, write: (s: string) => (lines.push(s), true) } as unknown as NodeJS.WriteStream };
}

const at = (phase: string, elapsedMs: number, tensorsDone: number, bytesDone: number, bytesTotal = 1000): Progress => ({
  phase, elapsedMs, tensorsDone, tensorsTotal: 10, bytesDone, bytesTotal,
});

test("plain lines: phase start, every interval, phase end; rate and ETA over the phase", () => {
  let now = 1_000_000;
  const spy = jest.spyOn(Date, "now").mockImplementation(() => now);
  try {
    const { lines, stream } = fakeStream(false);
    const view = createProgressView({ stream });
    view.update(at("threshold", 0, 0, 0)); // phase start
    now += 1000;
    view.update(at("threshold", 1000, 1, 100)); // within the interval: quiet
    now += 5000;
    view.update(at("threshold", 6000, 5, 600)); // interval passed
    now += 100;
    view.update(at("threshold", 6100, 10, 1000)); // phase end
    view.update(at("threshold", 6100, 10, 1000)); // repeated end: once only
    now += 100;
    view.update(at("merge", 6200, 0, 0, 2000)); // next phase
    now += 2000;
    view.update(at("merge", 8200, 10, 2000, 2000));
    view.stop();
    expect(lines).toEqual([
      "threshold: 0.0% | 0/10 tensors | 0 B/1.00 KB | 0 B/s | ETA ?\n",
      "threshold: 60.0% | 5/10 tensors | 600 B/1.00 KB | 100 B/s | ETA 4s\n",
      "threshold: 100.0% | 10/10 tensors | 1.00 KB/1.00 KB | 164 B/s | ETA 0s\n",
      "merge: 0.0% | 0/10 tensors | 0 B/2.00 KB | 0 B/s | ETA ?\n",
      "merge: 100.0% | 10/10 tensors | 2.00 KB/2.00 KB | 1.00 KB/s | ETA 0s\n",
    ]);
  } finally {
    spy.mockRestore();
  }
});

test("--quiet writes nothing", () => {
  const { lines, stream } = fakeStream(false);
  const view = createProgressView({ quiet: true, stream });
  view.update(at("merge", 0, 0, 0));
  view.stop();
  expect(lines).toEqual([]);
});

test("durations read like a person would write them", () => {
  expect([0.2, 59, 61, 3599, 3600 * 2 + 60 * 5].map(formatSeconds)).toEqual(["1s", "59s", "1m01s", "59m59s", "2h05m"]);
  expect(formatSeconds(Infinity)).toBe("?");
});
