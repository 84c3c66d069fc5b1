/**
 * The one module that calls the native addon: loading and info (addon.ts),
 * the typed ops (ops.ts).
 */
export { addonLocation, installRecord, nativeInfo, pinnedBuffer, runRawOp } from "./addon";
export type { AddonLocation, BackendInfo, BackendLoad, NativeInfo, OpArg, StateHandle } from "./addon";
export { allocState, freeState, readState } from "./state";
export { runOp } from "./ops";
export { DeviceUse, trackDeviceUse } from "./device_use";
export type { Bytes, ChunkArgs, DTypeName, MergeOpArgs, MergeOpName, OnDevice, OpArgsOf, OpName, OpResultOf, OpSignatures, SolvePrecision, TopSetArgs, TrimArgs } from "./ops";
