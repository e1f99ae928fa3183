import { dirname, resolve } from "node:path";
import { ConfigError, createLogger, loadConfigFile } from "@medmesh/common";
import { loadKeys, ReferenceVendorConfigSchema } from "./config.ts";
import { startReferenceVendor, type RunningReferenceVendor } from "./index.ts";

/**
 * `node bridge/src/vendor/main.ts <config.yaml|config.json>`: runs the reference vendor until
 * SIGINT / SIGTERM. Exit code 2 for an unusable config (every problem, with its field), 1 for a
 * failed start.
 */
const file = process.argv[2];
if (!file || file === "--help" || file === "-h") {
  process.stderr.write("usage: node bridge/src/vendor/main.ts <config.yaml|config.json>\n");
  process.exit(2);
}

let vendor: RunningReferenceVendor;
try {
  const config = loadConfigFile(ReferenceVendorConfigSchema, file);
  const baseDir = dirname(resolve(file));
  const keys = loadKeys(config, file, baseDir);
  const log = createLogger(`vendor-${config.vendor_id}`, config.log_level);
  vendor = await startReferenceVendor({
    dataFile: resolve(baseDir, config.data_file),
    listen: config.listen,
    ...(config.public_url ? { publicUrl: config.public_url } : {}),
    vendorId: config.vendor_id,
    keyId: config.key_id,
    privateKey: keys.privateKey,
    medmesh: { url: config.medmesh.url, keyId: config.medmesh.key_id, publicKey: keys.medmeshPublicKey },
    log,
    ...(config.broken ? { broken: config.broken } : {}),
  });
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

process.stdout.write(`reference vendor: ${vendor.url}/api, webhook ${vendor.webhookUrl}\n`);
const stop = (): void => {
  vendor.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`error while stopping: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
