import { parseArgs } from "node:util";
import { ConfigError, loadConfigFile } from "@medmesh/common";
import { TimDriverConfigSchema } from "./config.ts";
import { startTimDriver } from "./start.ts";

/**
 * The driver as a process of its own: `node tim-driver/src/main.ts --config driver.yaml` (the
 * runner starts it in-process instead; the benchmark uses this to measure the driver alone).
 */
const { values } = parseArgs({ options: { config: { type: "string", short: "c" } } });
if (!values.config) {
  process.stderr.write("usage: --config <tim-driver.yaml>\n");
  process.exit(2);
}
let config;
try {
  config = loadConfigFile(TimDriverConfigSchema, values.config);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const driver = await startTimDriver(config);
process.stdout.write(`tim-driver listening on ${driver.url}\n`);
const stop = (): void => {
  driver.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
