#!/usr/bin/env node
/**
 * SVG charts (plain SVG text) from the bench results:
 *   bench/out/quality.json -> accuracy.svg (mean test accuracy and normalized accuracy per method)
 *   bench/out/speed.json   -> time.svg (wall time per method and set, taskmerge vs PyTorch, floor)
 * Written to bench/out/ and copied to bench/plots/ (committed).
 *
 *   npm run bench:plot [-- --in bench/out]
 */
const fs = require("fs");
const path = require("path");

const ROOT = path.join(__dirname, "..");
const i = process.argv.indexOf("--in");
const IN = path.resolve(i >= 0 ? process.argv[i + 1] : path.join(ROOT, "bench", "out"));
const PLOTS = path.join(ROOT, "bench", "plots");

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];

/**
 * Horizontal grouped bar chart. groups: [{label, values: [number|null]}], series: names.
 * Bars of one group stack vertically under its label; a null value draws "n/a".
 */
function barChart({ title, unit, groups, series, max, fmt, line }) {
  const W = 760, left = 250, right = 70, barH = 13, gap = 10, top = 56;
  const groupH = series.length * barH + gap;
  const H = top + groups.length * groupH + 40;
  const scale = (W - left - right) / max;
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  series.forEach((s, k) => {
    const x = left + k * 170;
    o.push(`<rect x="${x}" y="30" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/><text x="${x + 16}" y="40">${esc(s)}</text>`);
  });
  // grid lines at 5 ticks
  for (let t = 0; t <= 5; t++) {
    const v = (max * t) / 5, x = left + v * scale;
    o.push(`<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${H - 34}" stroke="#ddd"/>`);
    o.push(`<text x="${x}" y="${H - 22}" text-anchor="middle" fill="#555">${esc(fmt(v))}</text>`);
  }
  o.push(`<text x="${left + (W - left - right) / 2}" y="${H - 8}" text-anchor="middle" fill="#333">${esc(unit)}</text>`);
  groups.forEach((g, gi) => {
    const y0 = top + gi * groupH;
    o.push(`<text x="${left - 8}" y="${y0 + (series.length * barH) / 2 + 4}" text-anchor="end">${esc(g.label)}</text>`);
    g.values.forEach((v, k) => {
      const y = y0 + k * barH;
      if (v === null || v === undefined || !Number.isFinite(v)) {
        o.push(`<text x="${left + 4}" y="${y + barH - 3}" fill="#999">${esc(g.missing?.[k] ?? "n/a")}</text>`);
        return;
      }
      const w = Math.max(1, Math.min(v, max) * scale);
      o.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${COLORS[k % COLORS.length]}"><title>${esc(`${g.label} ${series[k]}: ${fmt(v)}`)}</title></rect>`);
      o.push(`<text x="${left + w + 4}" y="${y + barH - 3}" fill="#333">${esc(fmt(v))}</text>`);
    });
    if (line && line[gi] !== undefined) {
      const x = left + line[gi].value * scale;
      o.push(`<line x1="${x}" y1="${y0 - 2}" x2="${x}" y2="${y0 + series.length * barH}" stroke="black" stroke-dasharray="3,2"><title>${esc(line[gi].label)}</title></line>`);
    }
  });
  o.push("</svg>");
  return o.join("\n") + "\n";
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

function accuracyChart(q) {
  const groups = q.rows.map((r) => {
    const acc = q.tasks.map((t) => r.test[t]);
    const norm = q.tasks.map((t) => r.test[t] / q.expertTest[t]);
    return { label: r.name.length > 38 ? r.name.slice(0, 36) + "…" : r.name, values: [100 * mean(acc), 100 * mean(norm)] };
  });
  return barChart({
    title: `Merge quality: Fashion-MNIST zoo, ${q.tasks.length} tasks (test split)`,
    unit: "accuracy (%)",
    series: ["mean test accuracy", "normalized (merged / expert)"],
    groups,
    max: 100,
    fmt: (v) => v.toFixed(1),
  });
}

function timeChart(s) {
  const groups = [], line = [];
  for (const set of s.sets)
    for (const r of set.rows) {
      const t = r.taskmerge && !r.taskmerge.error ? r.taskmerge.wall : null;
      const p = r.peer && !r.peer.error ? r.peer.wall : null;
      groups.push({
        label: `${set.set}: ${r.method}`,
        values: [t, p],
        missing: [r.skipped ? "skipped" : "failed", r.peerSkipped ? "PyTorch not run (memory)" : r.peer ? "PyTorch failed" : "no PyTorch peer"],
      });
      line.push({ value: set.floor.wall, label: `read-once floor ${set.floor.wall.toFixed(2)} s` });
    }
  const max = Math.max(1, ...groups.flatMap((g) => g.values.filter((v) => v !== null)));
  return barChart({
    title: "Merge wall time per method (cold page cache)",
    unit: "seconds (dashed line: read-once floor of the set)",
    series: ["taskmerge", "PyTorch (load all, then compute)"],
    groups,
    max: max * 1.08,
    fmt: (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1)),
    line,
  });
}

function main() {
  fs.mkdirSync(PLOTS, { recursive: true });
  const made = [];
  const put = (name, svg) => {
    fs.writeFileSync(path.join(IN, name), svg);
    fs.copyFileSync(path.join(IN, name), path.join(PLOTS, name));
    made.push(name);
  };
  const qf = path.join(IN, "quality.json"), sf = path.join(IN, "speed.json");
  if (fs.existsSync(qf)) put("accuracy.svg", accuracyChart(JSON.parse(fs.readFileSync(qf, "utf8"))));
  if (fs.existsSync(sf)) put("time.svg", timeChart(JSON.parse(fs.readFileSync(sf, "utf8"))));
  if (!made.length) {
    console.error(`bench/plot: neither ${qf} nor ${sf} exists; run npm run bench:quality / bench:speed first`);
    process.exit(1);
  }
  console.log(`bench/plot: wrote ${made.map((m) => path.join(IN, m)).join(", ")} (copied to ${PLOTS})`);
}

main();
