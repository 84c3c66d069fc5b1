/** The method registry: every merge method by name. */
import { UsageError } from "../errors";
import type { MergeMethod, MethodOptionsOf, Params } from "../engine/context";
import { checkParam } from "../engine/params";
import { average } from "./average";
import { taskArithmetic } from "./task_arithmetic";
import { ties } from "./ties";
import { dareLinear, dareTies } from "./dare";
import { consensusTa, consensusTies } from "./consensus";
import { lot } from "./lot";
import { regmean } from "./regmean";
import { breadcrumbs, breadcrumbsTies } from "./breadcrumbs";
import { getMergekitMethod, MERGEKIT_PREFIX } from "./mergekit";

const METHODS = [average, taskArithmetic, ties, dareLinear, dareTies, breadcrumbs, breadcrumbsTies, consensusTa, consensusTies, regmean, lot] as const;

type Registered = (typeof METHODS)[number];
/** The name of a registered method. */
export type MethodName = Registered["name"];
/**
 * A method and its parameters, typed per method from its declaration:
 * `{ name: "ties", density: 0.2 }`; an unknown parameter or a wrong value type fails to compile.
 */
export type MethodSpec = { [M in Registered as M["name"]]: MethodOptionsOf<M> }[MethodName];

/**
 * mergekit's definition of a method ("mergekit:ties", ...: lib/methods/mergekit),
 * with mergekit's parameter names; they are checked at run time against
 * mergekit's declarations, since its per-model values may be gradients or filters.
 */
export interface MergekitMethodSpec {
  name: `mergekit:${string}`;
  [param: string]: unknown;
}


export function listMethods(): readonly MergeMethod[] {
  return METHODS;
}

/** A method by name; "mergekit:<name>" is mergekit's definition of <name> (lib/methods/mergekit). */
export function getMethod(name: string): MergeMethod {
  if (name.startsWith(MERGEKIT_PREFIX)) return getMergekitMethod(name.slice(MERGEKIT_PREFIX.length));
  const m = (METHODS as readonly MergeMethod[]).find((x) => x.name === name);
  if (!m) throw new UsageError(`unknown method '${name}' (available: ${METHODS.map((x) => x.name).join(", ")})`);
  return m;
}

/** Fills defaults and validates user parameters against the method's declaration. */
export function resolveParams(method: MergeMethod, given: Record<string, unknown>): Params {
  const out: Params = {};
  const known = new Set(method.params.map((p) => p.name));
  for (const k of Object.keys(given)) {
    if (given[k] === undefined) continue;
    if (!known.has(k))
      throw new UsageError(
        `method '${method.name}' has no parameter '${k}'` +
          (known.size ? ` (parameters: ${[...known].join(", ")})` : " (it takes no parameters)"),
      );
  }
  for (const p of method.params) out[p.name] = checkParam(method.name, p, given[p.name] ?? p.default);
  return out;
}
