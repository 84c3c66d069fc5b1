/**
 * Turns SIGINT/SIGTERM into an AbortSignal so a run stops cleanly: the engine
 * aborts at the next chunk and removes its temporary output, then the command
 * exits 128 + the signal number (130 for Ctrl-C), as shells expect. A second
 * signal exits at once; the output path is still untouched then, only a
 * hidden temporary file or directory may remain beside it (the next run on
 * that output removes it). A signal that arrives once the output is past the
 * point of no return (its final rename) cannot stop it: the output is kept
 * whole and the command still exits 128 + the signal number, never 0.
 */
import { constants } from "os";
import { AbortError } from "../errors";

export class InterruptedError extends AbortError {
  constructor(readonly signal: NodeJS.Signals, outputComplete = false) {
    super(`interrupted by ${signal}; ${outputComplete ? "it came as the run was finishing, and its output is complete" : "no output was written"}`);
    this.name = "InterruptedError";
  }

  get exitCode(): number {
    return 128 + (constants.signals[this.signal] ?? 0);
  }
}

export async function withSignals<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (received) {
      process.stderr.write(`\ntaskmerge: ${sig} again; exiting without cleaning up\n`);
      process.exit(128 + (constants.signals[sig] ?? 0));
    }
    received = sig;
    ac.abort(new InterruptedError(sig));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const result = await fn(ac.signal);
    if (received) throw new InterruptedError(received, true);
    return result;
  } catch (e) {
    if (e instanceof InterruptedError) throw e;
    // Once interrupted, whatever the abort surfaced as (an AbortError, a closed writer) is the interruption.
    throw received ? new InterruptedError(received) : e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
