/**
 * Runs the taskmerge CLI (dist/) in this process and sends itself a signal at
 * one step of replacing an output directory, so tests can kill or interrupt a
 * run exactly between the two renames.
 *   node signal_at_step.js <old-moved-aside|new-in-place> <SIGKILL|SIGINT|...> <cli args...>
 */
const path = require("path");
const dist = process.env.TASKMERGE_DIST || path.join(__dirname, "..", "..", "dist");
const [step, sig, ...args] = process.argv.slice(2);
require(path.join(dist, "out_path", "slot.js")).replaceSteps.after = (s) => {
  if (s === step) process.kill(process.pid, sig);
};
require(path.join(dist, "cli", "main.js"))
  .main(["node", "taskmerge", ...args])
  .then((code) => (process.exitCode = code));
