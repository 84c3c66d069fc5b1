/** Tells the user what a run cleaned up of earlier killed runs (always shown: files were removed). */
export function printReclaimed(lines: string[]): void {
  for (const l of lines) process.stderr.write(`taskmerge: ${l}\n`);
}
