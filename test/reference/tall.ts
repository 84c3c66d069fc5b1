/** Float64 reference of TALL compression (SPEC) and an independent NumPy-packbits encoder. */
import { taskVectors, Tensors } from "./ties";
import { tallMask, tauMtl } from "./consensus";

/** NumPy packbits (bitorder "big"): element 8j+i in bit 7−i of byte j, last byte zero-padded. */
export function packbits(bits: ArrayLike<boolean>): Buffer {
  const out = Buffer.alloc(Math.ceil(bits.length / 8));
  for (let i = 0; i < bits.length; i++) if (bits[i]) out[Math.floor(i / 8)] += 2 ** (7 - (i % 8));
  return out;
}

export function unpackbits(bytes: Buffer, n: number): boolean[] {
  const out: boolean[] = [];
  for (let i = 0; i < n; i++) out.push(Math.floor(bytes[Math.floor(i / 8)] / 2 ** (7 - (i % 8))) % 2 === 1);
  return out;
}

export interface TallOptions {
  kind: "sum" | "ties";
  lambdas: number[];
  density?: number;
  scope?: "global" | "tensor";
}

/** τMTL and every task's mask per key. */
export function compressRef(base: Tensors, experts: Tensors[], keys: string[], o: TallOptions) {
  const tau = taskVectors(base, experts, keys);
  const mtl = tauMtl(tau, keys, o.kind, o.density ?? 0.2, o.scope ?? "global");
  const masks = tau.map((tv, t) => Object.fromEntries(keys.map((k) => [k, tallMask(tv[k], mtl[k], o.lambdas[t])])));
  return { tau: mtl, masks, taskVectors: tau };
}
