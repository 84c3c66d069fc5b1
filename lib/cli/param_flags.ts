/** Command-line options generated from ParamSpec declarations (merge's method parameters, compress's τMTL options, --device). */
import { Option } from "commander";
import type { ParamSpec } from "../engine/context";
import { flagOf, formatDefault, valuePlaceholder } from "../methods/describe";
import { DEVICE_PARAM } from "../device";

/** `--name <x>` for a parameter (a boolean one is a switch); choices, when given, are checked by commander too. */
export function paramOption(spec: ParamSpec, description: string, choices: readonly string[] | undefined = spec.choices): Option {
  const opt = new Option(`${flagOf(spec.name)} ${valuePlaceholder(spec)}`.trimEnd(), description);
  if (choices) opt.choices(choices);
  return opt;
}

/** `--device <s>` of the commands that run native ops (merge, compress, extract), from its one declaration. */
export function deviceOption(): Option {
  return paramOption(DEVICE_PARAM, `${DEVICE_PARAM.description} (default ${formatDefault(DEVICE_PARAM.default)})`);
}
