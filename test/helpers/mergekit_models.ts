/**
 * Small Llama-shaped checkpoints for the mergekit tests: L decoder layers named
 * as Hugging Face names them (model.layers.N...), so mergekit's gradients and
 * filters have layers and names to act on. Values lie on a grid (base on
 * 2⁻¹⁰, task vectors on 2⁻⁶), so τ = θt − θ0 is exact in float32 and |τ|
 * has many exact ties, the case where top-k rules differ.
 */
import * as path from "path";
import { rng, saveModel, KeySpec, Model, numel } from "./fixtures";
import { encode } from "./floatref";

export function llamaKeys(layers = 4, hidden = 16): KeySpec[] {
  const keys: KeySpec[] = [{ name: "model.embed_tokens.weight", shape: [32, hidden], dtype: "F32" }];
  for (let i = 0; i < layers; i++)
    keys.push(
      { name: `model.layers.${i}.self_attn.q_proj.weight`, shape: [hidden, hidden], dtype: "F32" },
      { name: `model.layers.${i}.mlp.up_proj.weight`, shape: [2 * hidden, hidden], dtype: "F32" },
      { name: `model.layers.${i}.input_layernorm.weight`, shape: [hidden], dtype: "F32" },
    );
  keys.push({ name: "model.norm.weight", shape: [hidden], dtype: "F32" }, { name: "lm_head.weight", shape: [32, hidden], dtype: "F32" });
  return keys;
}

function gridModel(keys: KeySpec[], seed: number, base?: Model): Model {
  const r = rng(seed);
  const floats: Record<string, Float64Array> = {};
  const raw: Model["raw"] = {};
  for (const k of keys) {
    const n = numel(k.shape);
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++)
      v[i] = base ? base.floats[k.name][i] + Math.round(r.normal() * 4) / 64 : Math.round(r.normal() * 1024) / 1024;
    floats[k.name] = v;
    raw[k.name] = { dtype: "F32", shape: k.shape, data: encode(v, "F32") };
  }
  return { path: "", floats, raw };
}

export interface MkZoo {
  keys: KeySpec[];
  base: Model;
  experts: Model[];
}

/** base/, task0/ ... task{T-1}/ (HF directories) in `dir`, and same/ = a copy of the base. */
export function makeMkZoo(dir: string, T: number, seed = 3, keys = llamaKeys()): MkZoo {
  const base = gridModel(keys, seed);
  saveModel(base, path.join(dir, "base"), "dir");
  const same: Model = { path: "", floats: base.floats, raw: base.raw };
  saveModel(same, path.join(dir, "same"), "dir");
  const experts = Array.from({ length: T }, (_, t) => saveAs(gridModel(keys, seed * 100 + t + 1, base), path.join(dir, `task${t}`)));
  base.path = path.join(dir, "base");
  return { keys, base, experts };
}

function saveAs(m: Model, p: string): Model {
  saveModel(m, p, "dir");
  return m;
}
