/**
 * `--stats-command 'CMD'`: a shell command as the statistics collector, run
 * once per group and expert with {model}, {expert}, {keys} (a text file of
 * the group's keys, one a line) and {out} (the statistics file to write)
 * replaced by shell-quoted values. It runs in a process group of its own so
 * that an abort (or Ctrl-C) kills it and its children; a failure stops the
 * merge with its exit code and last stderr line.
 */
import { spawn } from "child_process";
import { constants } from "os";
import { promises as fsp } from "fs";
import * as path from "path";
import { AbortError, TaskmergeError, UsageError } from "../errors";
import type { CollectStats, CollectStatsRequest } from "./collect";

const PLACEHOLDERS = ["model", "expert", "keys", "out"] as const;
/** How long a collector may take to exit after SIGTERM before it gets SIGKILL. */
const KILL_GRACE_MS = 3000;

/** The collector failed: the merge exits with the command's exit code. */
export class StatsCommandError extends TaskmergeError {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = "StatsCommandError";
  }
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The command with its placeholders filled in. Unknown braces (e.g. ${HOME}) are left to the shell. */
export function fillCommand(cmd: string, values: Record<(typeof PLACEHOLDERS)[number], string>): string {
  return cmd.replace(/\{(model|expert|keys|out)\}/g, (_, k: keyof typeof values) => shellQuote(values[k]));
}

export function statsCommand(cmd: string): CollectStats {
  if (typeof cmd !== "string" || !cmd.trim()) throw new UsageError("--stats-command needs a command");
  for (const p of ["model", "out"])
    if (!cmd.includes(`{${p}}`)) throw new UsageError(`--stats-command must use {${p}} (placeholders: ${PLACEHOLDERS.map((x) => `{${x}}`).join(", ")})`);
  return async (req: CollectStatsRequest) => {
    const keysFile = path.join(path.dirname(req.out), `${path.basename(req.out, ".safetensors")}.keys.txt`);
    await fsp.writeFile(keysFile, req.keys.join("\n") + "\n");
    try {
      await run(fillCommand(cmd, { model: req.model, expert: req.expert, keys: keysFile, out: req.out }), req);
    } finally {
      await fsp.rm(keysFile, { force: true });
    }
    const st = await fsp.stat(req.out).catch(() => undefined);
    if (!st?.isFile())
      throw new TaskmergeError(`the statistics command exited 0 for expert '${req.expert}', group '${req.group}' but wrote no file at {out}`, req.out);
    return req.out;
  };
}

function run(command: string, req: CollectStatsRequest): Promise<void> {
  const { signal } = req;
  if (signal.aborted) return Promise.reject(new AbortError());
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let lastLine = "";
    let tail = "";
    // The collector's output is the user's: shown on stderr, keeping stdout free for --json.
    child.stdout.on("data", (d: Buffer) => process.stderr.write(d));
    child.stderr.on("data", (d: Buffer) => {
      process.stderr.write(d);
      tail = (tail + d.toString("utf8")).slice(-4096);
      const lines = tail.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
      if (lines.length) lastLine = lines[lines.length - 1];
    });
    let killTimer: NodeJS.Timeout | undefined;
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, sig); // the whole process group: the shell and what it started
      } catch {
        /* already gone */
      }
    };
    const onAbort = () => {
      kill("SIGTERM");
      killTimer = setTimeout(() => kill("SIGKILL"), KILL_GRACE_MS);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    child.on("error", (e) => {
      signal.removeEventListener("abort", onAbort);
      reject(new TaskmergeError(`cannot run the statistics command: ${e.message}`));
    });
    child.on("close", (code, sig) => {
      signal.removeEventListener("abort", onAbort);
      if (killTimer) clearTimeout(killTimer);
      if (signal.aborted) return reject(new AbortError());
      if (code === 0) return resolve();
      const exitCode = code ?? 128 + (sig ? constants.signals[sig] ?? 0 : 0);
      const how = code !== null ? `exit code ${code}` : `killed by ${sig}`;
      reject(
        new StatsCommandError(
          `the statistics command failed for expert '${req.expert}', group '${req.group}' (${how})${lastLine ? `: ${lastLine}` : ""}`,
          exitCode,
        ),
      );
    });
  });
}
