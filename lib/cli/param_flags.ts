/** Command-line options generated from ParamSpec declarations (merge's method parameters, compress's τMTL options). */
import { Option } from "commander";
import type { ParamSpec } from "../engine/context";
import { flagOf, valuePlaceholder } from "../methods/describe";

/** `--name <x>` for a parameter (a boolean one is a switch); choices, when given, are checked by commander too. */
export function paramOption(spec: ParamSpec, description: string, choices: readonly string[] | undefined = spec.choices): Option {
  const opt = new Option(`${flagOf(spec.name)} ${valuePlaceholder(spec)}`.trimEnd(), description);
  if (choices) opt.choices(choices);
  return opt;
}
