/**
 * Loads the native addon: its entry points run(op, args), which runs a named
 * C++ op on a worker thread and resolves with its results, and info(). Only
 * lib/native/ calls them; the rest of lib/ calls the typed ops of ops.ts.
 *
 * Which addon: TASKMERGE_ADDON when set, else node-gyp-build's rule — the
 * local build in build/Release (made at install by cmake-js or node-gyp),
 * else the prebuilt addon shipped in prebuilds/<platform>-<arch>/.
 */
import * as fs from "fs";
import * as path from "path";
import { envValue } from "../env";

declare const stateBrand: unique symbol;
/**
 * A state buffer in the memory of one device's backend (op state_alloc),
 * held across op calls: what the selection ops take instead of typed arrays,
 * so their state does not cross the boundary with every chunk. Opaque (a
 * tagged Node-API external); freed with state_free, or when collected.
 */
export interface StateHandle {
  readonly [stateBrand]: "StateHandle";
}

export type OpArg = number | boolean | string | Uint8Array | ArrayBufferView | number[] | string[] | ArrayBufferView[] | StateHandle;
export type OpResult = Record<string, number | number[] | Buffer | string | StateHandle>;

/** A backend ops can run on (the `device` argument), as the addon's registry reports it. */
export interface BackendInfo {
  /** "cpu", "cuda". */
  name: string;
  /** "built in", or the shared library it was loaded from. */
  origin: string;
  /** Whether it has a usable device; `description` says which, or why not. */
  available: boolean;
  description: string;
  memoryBytes?: number;
  /** Its dense linear algebra ("openblas", "builtin", ...). */
  linalg: string;
}

/** What the addon's loader did with an optional backend library. */
export interface BackendLoad {
  name: string;
  path: string;
  /** "absent", "loaded", or why it did not load. */
  status: string;
}

export interface NativeInfo {
  threads: number;
  /** The CPU backend's linear algebra: "openblas" or "builtin". */
  blas: string;
  backends: BackendInfo[];
  backendLoads: BackendLoad[];
  /** The build tool that made the binary: "cmake-js" or "node-gyp". */
  build: string;
  ops: string[];
}

/** Where the loaded addon came from. */
export interface AddonLocation {
  path: string;
  origin: "TASKMERGE_ADDON" | "local build" | "prebuilt";
}

interface Addon {
  run(op: string, args: Record<string, OpArg | undefined>): Promise<OpResult>;
  info(): NativeInfo;
  pinnedBuffer(bytes: number, device: string): Buffer | undefined;
}

const root = path.join(__dirname, "..", "..");
const nodeGypBuild: { path(dir: string): string } = require("node-gyp-build");

let loaded: { addon: Addon; location: AddonLocation } | undefined;

function locate(): AddonLocation {
  const env = process.env.TASKMERGE_ADDON;
  if (env) return { path: path.resolve(env), origin: "TASKMERGE_ADDON" };
  let file: string;
  try {
    file = nodeGypBuild.path(root);
  } catch (e) {
    throw new Error(
      `taskmerge: no native addon: no local build in ${path.join(root, "build", "Release")} and ` +
        `${(e as Error).message.split("\n")[0].replace(/^No native build was found/, "no prebuilt addon")}; ` +
        "run 'npm rebuild taskmerge' (needs cmake or a C++ compiler)",
    );
  }
  // node-gyp-build also finds prebuilds beside the node binary: only build/ is a local build.
  const local = path.join(root, "build") + path.sep;
  return { path: file, origin: file.startsWith(local) ? "local build" : "prebuilt" };
}

function load(): { addon: Addon; location: AddonLocation } {
  if (loaded) return loaded;
  const location = locate();
  try {
    loaded = { addon: require(location.path) as Addon, location };
  } catch (e) {
    throw new Error(
      `taskmerge: the native addon ${location.path} (${location.origin}) does not load: ` +
        `${(e as Error).message.split("\n")[0]}; ` +
        (location.origin === "TASKMERGE_ADDON" ? "point TASKMERGE_ADDON at a built taskmerge.node" : "run 'npm rebuild taskmerge'"),
    );
  }
  return loaded;
}

/**
 * Runs a native op by name with an untyped argument bag: the typed ops of
 * ops.ts are built on it (tests and benchmarks use it directly). Always a
 * promise: argument errors the addon throws synchronously become rejections.
 */
export async function runRawOp(op: string, args: Record<string, OpArg | undefined>): Promise<OpResult> {
  // The addon reads TASKMERGE_THREADS and TASKMERGE_LINALG itself and would ignore a bad value.
  envValue("TASKMERGE_THREADS");
  envValue("TASKMERGE_LINALG");
  return load().addon.run(op, args);
}

/**
 * A buffer of `bytes` in host memory page-locked for `device`'s copies (its
 * backend's host_register), or undefined where that backend has no such entry
 * or refuses. The addon owns the memory: unregistered and freed only when the
 * Buffer is garbage-collected, so it never moves or goes while registered.
 */
export function pinnedBuffer(bytes: number, device: string): Buffer | undefined {
  return load().addon.pinnedBuffer(bytes, device);
}

export function nativeInfo(): NativeInfo {
  return load().addon.info();
}

export function addonLocation(): AddonLocation {
  return load().location;
}

/**
 * What the install script recorded (build/install.json): which step gave the
 * addon and why the better ones were not used; undefined when not recorded.
 */
export function installRecord(): { result: string | null; failures: string[] } | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, "build", "install.json"), "utf8"));
  } catch {
    return undefined;
  }
}
