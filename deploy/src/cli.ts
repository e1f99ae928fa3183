import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, loadConfigFile } from "@medmesh/common";
import { runAdminCli, runAuditCli, runProxyCli, runTrustCli } from "@medmesh/policy-module";
import { DeploymentSchema } from "./config/schema.ts";
import { generateNetwork } from "./generate.ts";
import { installSynapse, REPO_ROOT, startNetwork } from "./network.ts";
import { CONFIG_KINDS, driftedSamples, kindForFile, renderKind } from "./samples.ts";

const USAGE = `usage: medmesh <command> [options]

commands:
  start [--config FILE] [--tim]    start a local multi-organisation network (default config/local-network.yaml;
                                   --tim: config/tim-network.yaml, three TI-M organisations with test drivers)
  generate --config FILE           generate Synapse + service configs, keys and certificates, without starting
  validate-config FILE [--kind K]  check a config file (K: ${CONFIG_KINDS.map((k) => k.kind).join(", ")}; guessed from the name)
  generate-samples [--check]       write config/*.sample.yaml from the schemas (--check: fail on drift)
  install-synapse                  install the pinned Synapse into deploy/.venv
  trust <command> …                create, sign, verify and rotate signed trust lists (medmesh trust help)
  audit verify …                   check the audit log's hash chain against its signed anchor (medmesh audit help)
  proxy endpoints [--json]         the policy proxy's endpoint table (what it forwards or refuses)
  admin <command> …                the admin console's API: reviews, users, wipe, audit export (medmesh admin help)
`;

const DEFAULT_NETWORK = join(REPO_ROOT, "config", "local-network.yaml");
// `npm start -- --tim`: three TI-M organisations with their test drivers (docs/tim-driver.md).
const TIM_NETWORK = join(REPO_ROOT, "config", "tim-network.yaml");

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "trust") {
    return runTrustCli(rest, {
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
    });
  }
  if (command === "audit")
    return runAuditCli(rest, {
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
    });
  if (command === "admin")
    return runAdminCli(rest, {
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
    });
  if (command === "proxy") {
    return runProxyCli(rest, {
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
    });
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      kind: { type: "string" },
      check: { type: "boolean" },
      tim: { type: "boolean" },
    },
  });
  switch (command) {
    case "start":
      return startCommand(values.config ?? (values.tim ? TIM_NETWORK : DEFAULT_NETWORK));
    case "generate": {
      const file = values.config ?? DEFAULT_NETWORK;
      const net = await generateNetwork(loadConfigFile(DeploymentSchema, file), dirname(resolve(file)));
      for (const o of net.organisations) {
        console.log(`${o.org.name}: ${o.paths.root}`);
      }
      return 0;
    }
    case "validate-config": {
      const file = positionals[0];
      if (!file) break;
      const kind = values.kind ? CONFIG_KINDS.find((k) => k.kind === values.kind) : kindForFile(file);
      if (!kind) throw new ConfigError(file, [`unknown --kind ${String(values.kind)}`]);
      loadConfigFile(kind.schema, file);
      console.log(`${file}: valid ${kind.kind} config`);
      return 0;
    }
    case "generate-samples": {
      const dir = join(REPO_ROOT, "config");
      if (values.check) {
        const drifted = driftedSamples(dir);
        if (drifted.length) {
          console.error(`samples out of date: ${drifted.join(", ")} (run npm run generate-samples)`);
          return 1;
        }
        console.log("samples match the schemas");
        return 0;
      }
      for (const k of CONFIG_KINDS) writeFileSync(join(dir, k.sample), renderKind(k));
      console.log(`wrote ${CONFIG_KINDS.map((k) => `config/${k.sample}`).join(", ")}`);
      return 0;
    }
    case "install-synapse":
      await installSynapse(resolve(REPO_ROOT, "deploy/.venv"), (line) => {
        console.log(line);
      });
      console.log("Synapse is installed");
      return 0;
  }
  process.stderr.write(USAGE);
  return 2;
}

async function startCommand(file: string): Promise<number> {
  const started = Date.now();
  const deployment = loadConfigFile(DeploymentSchema, file);
  const network = await startNetwork(deployment, {
    baseDir: dirname(resolve(file)),
    progress: (line) => {
      console.log(`… ${line}`);
    },
  });
  const lines = [`MedMesh is ready (${((Date.now() - started) / 1000).toFixed(1)} s)`, ""];
  for (const o of network.organisations) {
    lines.push(`${o.org.name}  (${o.serverName})`);
    lines.push(`  client URL:    ${o.clientUrl}`);
    for (const s of o.services) lines.push(`  ${s.name}: ${s.url}/health`);
    lines.push(`  admin console: ${o.clientUrl}/_medmesh/console/`);
    if (o.timDriver) lines.push(`  TI-M test driver (${o.org.profile}): ${o.timDriver.url}`);
    for (const u of o.org.demo_users)
      lines.push(`  demo login:    ${u.localpart} / ${u.password}${u.admin ? "  (org admin: console)" : ""}`);
    if (o.demoVendor && o.org.demo_vendor) {
      const v = o.org.demo_vendor;
      lines.push(
        `  reference messenger "${v.id}" (bridged): ${o.demoVendor.url}/api  (bridge/src/vendor/README.md)`,
      );
      for (const u of v.users)
        lines.push(`    ${u.id} is @bridge_${v.id}_${u.id}:${o.serverName} in Matrix: invite to chat`);
    }
    lines.push("");
  }
  lines.push(`network description: ${network.descriptionFile}`, "press Ctrl-C to stop");
  console.log(lines.join("\n"));

  // Run until Ctrl-C / SIGTERM, or until a homeserver dies under us: then stop the rest and say so.
  const crashed = await new Promise<string | undefined>((resolveStop) => {
    const onSignal = (signal: string): void => {
      console.log(`\n${signal}: stopping MedMesh …`);
      resolveStop(undefined);
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    for (const o of network.organisations) {
      void o.synapse.exited.then((code) => {
        resolveStop(
          `Synapse of ${o.org.name} exited unexpectedly (code ${String(code)}); see ${o.paths.logFile}`,
        );
      });
    }
  });
  if (crashed) console.error(`error: ${crashed}; stopping MedMesh …`);
  await network.stop();
  console.log("stopped; data kept in " + network.dataDir);
  return crashed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
