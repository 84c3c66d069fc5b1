/**
 * The per-model, per-tensor parameters (weight, density) of the mergekit:*
 * methods: each expert's setting evaluated for a key at its layer position,
 * with mergekit's defaults.
 */
import { UsageError } from "../../errors";
import type { Checkpoint } from "../../checkpoint";
import type { Expert } from "../../engine/context";
import { evaluateSetting, layerPositions, Setting } from "./settings";

const positions = new WeakMap<Checkpoint, (key: string) => number>();

/** t ∈ [0, 1] of `key` for gradients (cached per base). */
export function layerT(base: Checkpoint, key: string): number {
  let p = positions.get(base);
  if (!p) positions.set(base, (p = layerPositions(base.keys())));
  return p(key);
}

/** The setting of `name` an expert carries: its per-model parameters, else (weight) its scalar weight. */
export function settingOf(e: Expert, name: string): Setting | undefined {
  return e.parameters?.[name] ?? (name === "weight" ? e.weight : undefined);
}

/** The value of parameter `name` of expert `e` for tensor `key`, `fallback` when it has none there. */
export function modelValue(method: string, base: Checkpoint, e: Expert, name: string, key: string, fallback: number): number {
  const s = settingOf(e, name);
  const v = s === undefined ? undefined : evaluateSetting(s, key, layerT(base, key));
  const x = v ?? fallback;
  if (typeof x !== "number" || !Number.isFinite(x))
    throw new UsageError(`${method}: model '${e.name}': parameter '${name}' is ${JSON.stringify(x)} for ${key}; expected a finite number`);
  return x;
}

/** What --dry-run and the manifest show of a parameter: its value, or the setting when it varies per tensor. */
export function shownSetting(e: Expert, name: string, fallback: number): unknown {
  return settingOf(e, name) ?? fallback;
}
