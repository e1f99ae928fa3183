import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { JsonWebKey } from "node:crypto";
import { generateKey, loadPrivateKey, publicJwkOf, signTrustList } from "@medmesh/policy-module";
import type { DeploymentConfig } from "./config/schema.ts";
import type { GeneratedOrganisation } from "./generate.ts";
import { ensureSecretFile } from "./secrets.ts";

export interface TrustFiles {
  dir: string;
  operatorKey: string;
  operatorPublicKey: string;
  list: string;
  signedList: string;
}

export function trustFiles(dataDir: string): TrustFiles {
  const dir = join(dataDir, "trust");
  return {
    dir,
    operatorKey: join(dir, "operator.jwk.json"),
    operatorPublicKey: join(dir, "operator.pub.jwk.json"),
    list: join(dir, "list.json"),
    signedList: join(dir, "list.jws"),
  };
}

/**
 * The local network's operator: one key in data_dir/trust, and at every start a newly signed list
 * (higher sequence) of the deployment's organisations with their public keys.
 */
export async function signLocalTrustList(
  deployment: DeploymentConfig,
  files: TrustFiles,
  organisations: readonly GeneratedOrganisation[],
): Promise<string[]> {
  const operator = JSON.parse(
    await ensureSecretFile(files.operatorKey, () => JSON.stringify(generateKey().privateJwk)),
  ) as JsonWebKey & { kid: string };
  await writeFile(files.operatorPublicKey, JSON.stringify(publicJwkOf(operator)) + "\n");
  const previous = existsSync(files.list)
    ? (JSON.parse(readFileSync(files.list, "utf8")) as { sequence?: number })
    : {};
  const now = new Date();
  const listed = organisations.filter((g) => !deployment.trust.unlisted.includes(g.org.id));
  const list = {
    version: 1 as const,
    network: "medmesh-local",
    sequence: (previous.sequence ?? 0) + 1,
    issued_at: now.toISOString(),
    expires_at: new Date(now.getTime() + 365 * 86_400_000).toISOString(),
    organisations: listed.map((g) => ({
      server_name: g.serverName,
      name: g.org.name,
      identifier: g.org.id,
      ...(g.org.profile === "tim-epa" ? { insured_persons: true } : {}),
      attestation_keys: [
        publicJwkOf(JSON.parse(readFileSync(g.paths.organisationKey, "utf8")) as JsonWebKey),
      ],
    })),
  };
  await writeFile(files.list, JSON.stringify(list, null, 2) + "\n");
  await writeFile(files.signedList, signTrustList(list, loadPrivateKey(operator), operator.kid) + "\n");
  return listed.map((g) => g.serverName);
}
