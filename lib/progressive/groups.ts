/**
 * Layer groups of a progressive merge, in forward order.
 *
 * - "block": one group per block index in the key names (`blocks.N.`,
 *   `layers.N.`, `h.N.`, `layer.N.`, `block.N.`, `resblocks.N.`), in index
 *   order; keys outside blocks form a group before the blocks when a name part
 *   says embedding (`embed…`, `wte`, `wpe`, `cls_token`, `conv1`, `ln_pre`,
 *   `stem`) and a group after them otherwise (final norm, head, pooler). The
 *   last group is the safe default for an unknown key: its statistics are then
 *   collected with every block already merged.
 * - "module": one group per module named in a file, in the file's order
 *   (key order is not forward order). A module owns `M`, `M.*`, `M_weight` and
 *   `M_bias`; the longest listed name wins; every float key needs an owner.
 */
import { TaskmergeError } from "../errors";

export interface KeyGroup {
  /** "first", "last", the block prefix ("blocks.3") or the module name. */
  name: string;
  keys: string[];
}

const BLOCK_WORDS = new Set(["blocks", "block", "layers", "layer", "h", "resblocks"]);
const FIRST_PART = /embed|^wte$|^wpe$|^cls_token$|^conv1$|^ln_pre$|^stem/i;

/** The block a key belongs to: its stack ("encoder.layers") and index, or undefined. */
export function blockOf(key: string): { stack: string; index: number } | undefined {
  const parts = key.split(".");
  for (let i = 0; i + 2 < parts.length; i++)
    if (BLOCK_WORDS.has(parts[i]) && /^\d+$/.test(parts[i + 1])) return { stack: parts.slice(0, i + 1).join("."), index: Number(parts[i + 1]) };
  return undefined;
}

export function blockGroups(keys: string[]): KeyGroup[] {
  const first: string[] = [];
  const last: string[] = [];
  const stacks = new Map<string, Map<number, string[]>>();
  for (const key of keys) {
    const b = blockOf(key);
    if (b) {
      let s = stacks.get(b.stack);
      if (!s) stacks.set(b.stack, (s = new Map()));
      let g = s.get(b.index);
      if (!g) s.set(b.index, (g = []));
      g.push(key);
    } else (key.split(".").some((p) => FIRST_PART.test(p)) ? first : last).push(key);
  }
  // An encoder runs before a decoder; other stacks (towers) keep their first-seen order.
  const order = [...stacks.keys()].sort((a, b) => Number(/decoder/i.test(a)) - Number(/decoder/i.test(b)));
  const groups: KeyGroup[] = [];
  if (first.length) groups.push({ name: "first", keys: first });
  for (const stack of order) {
    const s = stacks.get(stack)!;
    for (const index of [...s.keys()].sort((a, b) => a - b)) groups.push({ name: `${stack}.${index}`, keys: s.get(index)! });
  }
  if (last.length) groups.push({ name: "last", keys: last });
  return groups;
}

/** Module names from the text of a module order file: one a line, blank lines and `#` comments ignored. */
export function parseModuleOrder(text: string, file: string): string[] {
  const names: string[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const name = raw.replace(/#.*$/, "").trim();
    if (!name) return;
    if (seen.has(name)) throw new TaskmergeError(`line ${i + 1}: module '${name}' is listed twice (also line ${seen.get(name)})`, file);
    seen.set(name, i + 1);
    names.push(name);
  });
  if (!names.length) throw new TaskmergeError("the module order file lists no module", file);
  return names;
}

function owns(module: string, key: string): boolean {
  return key === module || key.startsWith(`${module}.`) || key === `${module}_weight` || key === `${module}_bias`;
}

export function moduleGroups(keys: string[], modules: string[], file: string): KeyGroup[] {
  const byModule = new Map<string, string[]>(modules.map((m) => [m, []]));
  // Longest names first, so "attn.in_proj" wins over "attn".
  const bySpecificity = [...modules].sort((a, b) => b.length - a.length);
  const orphans: string[] = [];
  for (const key of keys) {
    const m = bySpecificity.find((name) => owns(name, key));
    if (m === undefined) orphans.push(key);
    else byModule.get(m)!.push(key);
  }
  if (orphans.length)
    throw new TaskmergeError(
      `no listed module owns ${orphans.length} floating-point key(s), e.g. '${orphans[0]}'; list the module (or the key itself) in forward order`,
      file,
    );
  const empty = modules.find((m) => !byModule.get(m)!.length);
  if (empty !== undefined) throw new TaskmergeError(`module '${empty}' owns no floating-point key of the base`, file);
  return modules.map((m) => ({ name: m, keys: byModule.get(m)! }));
}
