/**
 * The library's option types are strict: test/types/api_options.ts, compiled
 * with the project's compiler options, has no errors — its `@ts-expect-error`
 * lines (misspelt or foreign parameters, wrong value types, mergekit dtype
 * names) are all errors, or the directive itself would be reported unused.
 */
import * as path from "path";
import * as ts from "typescript";

test("per-method options and dtype names are checked by tsc", () => {
  const root = path.join(__dirname, "..");
  const cfg = ts.getParsedCommandLineOfConfigFile(path.join(root, "tsconfig.json"), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined })!;
  const file = path.join(__dirname, "types", "api_options.ts");
  const program = ts.createProgram([file], { ...cfg.options, noEmit: true, rootDir: root });
  const diags = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${path.relative(root, d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : "";
    return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
  });
  expect(diags).toEqual([]);
  // The file really holds the expectations (guards against an emptied file).
  expect(program.getSourceFile(file)!.text.match(/^\s*\/\/ @ts-expect-error/gm)).toHaveLength(8);
});
