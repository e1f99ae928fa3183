import { parseArgs } from "node:util";
import type { z } from "zod";
import { ConfigError, loadConfigFile } from "../config/load.ts";
import type { RunningService } from "./appservice-service.ts";

/**
 * Command-line entry shared by the services: `--config <file>`, start, stop cleanly on SIGINT /
 * SIGTERM. Exit code 2 for an unusable config (printed with every problem), 1 for a failed start.
 */
export async function runServiceMain<S extends z.ZodType>(
  schema: S,
  start: (config: z.output<S>) => Promise<RunningService>,
  argv: string[] = process.argv.slice(2),
): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: "string", short: "c" } } });
  if (!values.config) {
    process.stderr.write("usage: --config <file.yaml>\n");
    process.exit(2);
  }
  let config: z.output<S>;
  try {
    config = loadConfigFile(schema, values.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let service: RunningService;
  try {
    service = await start(config);
  } catch (err) {
    process.stderr.write(`failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const stop = (): void => {
    service.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        service.log.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
