/**
 * What the benchmarks share: command-line flags, medians, dropping inputs from
 * the page cache, timing a child process under /usr/bin/time, and the
 * read-once floor every streaming measurement is compared with.
 */
const fs = require("fs");
const { spawnSync } = require("child_process");

/** The value after --name, or def. */
function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}
const flag = (name) => process.argv.includes(`--${name}`);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Drops files from this machine's page cache so the next read comes from disk
 * (no root needed): fsync first, as dirty pages cannot be dropped, then dd's
 * nocache (posix_fadvise DONTNEED). The virtual disk's host may still cache.
 */
function evict(files) {
  for (const f of files) {
    const fd = fs.openSync(f, "r");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const r = spawnSync("dd", [`if=${f}`, "iflag=nocache", "count=0", "status=none"]);
    if (r.status !== 0) throw new Error(`page-cache eviction of ${f} failed: ${r.stderr}`);
  }
}

/** Runs argv under /usr/bin/time -v: wall seconds, peak RSS bytes and stdout (or error). */
function timed(argv, env = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync("/usr/bin/time", ["-v", ...argv], { encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  if (r.status !== 0) {
    const why = r.stderr.split("\n").filter((l) => l.trim() && !/^\t/.test(l)).slice(-2).join(" ");
    return { error: `exit ${r.status}: ${why || "killed"}`, wall, rss: rss ? Number(rss[1]) * 1024 : 0 };
  }
  return { wall, rss: Number(rss[1]) * 1024, stdout: r.stdout };
}

/**
 * The read-once floor: every input file read once from a cold page cache,
 * 16 MiB at a time, one file after another and all files at once (taskmerge
 * reads its inputs in parallel); the faster counts.
 */
function readOnceFloor(files) {
  const seq = `const fs=require("fs");const b=Buffer.allocUnsafe(16<<20);for(const f of process.argv.slice(1)){const fd=fs.openSync(f,"r");while(fs.readSync(fd,b,0,b.length,null)>0);fs.closeSync(fd);}`;
  const par = `const fs=require("fs").promises;Promise.all(process.argv.slice(1).map(async(f)=>{const h=await fs.open(f,"r");const b=Buffer.allocUnsafe(16<<20);while((await h.read(b,0,b.length,null)).bytesRead>0);await h.close();}));`;
  evict(files);
  const sequential = timed([process.execPath, "-e", seq, ...files]);
  evict(files);
  const parallel = timed([process.execPath, "-e", par, ...files], { UV_THREADPOOL_SIZE: "16" });
  const best = parallel.wall < sequential.wall ? parallel : sequential;
  return { wall: best.wall, rss: best.rss, sequential: sequential.wall, parallel: parallel.wall };
}

module.exports = { arg, flag, median, evict, timed, readOnceFloor };
