/** Byte sizes in options ("5GB", "500MB", "2GiB", or a number of bytes). */
const UNITS: Record<string, number> = {
  "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

export function parseByteSize(v: string | number): number {
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v <= 0) throw new Error(`invalid size ${v}`);
    return Math.floor(v);
  }
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || Number(m[1]) <= 0) throw new Error(`invalid size '${v}' (e.g. 5GB, 500MB)`);
  return Math.floor(Number(m[1]) * unit);
}

export function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i ? n.toFixed(n < 10 ? 2 : 1) : n} ${units[i]}`;
}
