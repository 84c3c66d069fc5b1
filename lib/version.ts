/** The package version, read once from package.json. */
import * as path from "path";
import { readFileSync } from "fs";

export const VERSION: string = JSON.parse(readFileSync(path.join(__dirname, "..", "package.json"), "utf8")).version;
