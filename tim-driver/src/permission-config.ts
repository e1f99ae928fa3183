import type { MatrixClient } from "matrix-js-sdk";
import { DriverError, badRequest } from "./errors.ts";

/**
 * The TI-M permission config (gematik permissionConfig_Pro_V1) as global account data: the Pro
 * type for professionals, the ePA type (same format) for insured persons. The driver only reads
 * and writes it; MedMesh's policy module enforces it on every invite path.
 */
export const PERMISSION_CONFIG_TYPE = "de.gematik.tim.account.permissionconfig.pro.v1";
export const EPA_PERMISSION_CONFIG_TYPE = "de.gematik.tim.account.permissionconfig.epa.v1";
export type PermissionConfigType = typeof PERMISSION_CONFIG_TYPE | typeof EPA_PERMISSION_CONFIG_TYPE;

/** The account data type of the driver's accounts: the ePA one on an organisation of insured persons. */
export const permissionConfigType = (profile: "tim-pro" | "tim-epa"): PermissionConfigType =>
  profile === "tim-epa" ? EPA_PERMISSION_CONFIG_TYPE : PERMISSION_CONFIG_TYPE;
export const DEFAULT_PERMISSION_CONFIG = { defaultSetting: "allow all" } as const;

interface PermissionConfig {
  defaultSetting: "allow all" | "block all";
  userExceptions?: Record<string, object>;
  serverExceptions?: Record<string, object>;
  groupExceptions?: { groupName: string }[];
  [k: string]: unknown;
}

export type AuthorizationMode = "AllowAll" | "BlockAll";

export interface AuthorizationList {
  mxids: { mxid: string }[];
  serverNames: { serverName: string }[];
  groupNames: string[];
}

export async function readConfig(
  client: MatrixClient,
  type: PermissionConfigType,
): Promise<PermissionConfig> {
  const content = await client.getAccountDataFromServer(type as never).catch((err: unknown) => {
    if ((err as { httpStatus?: number }).httpStatus === 404) return null;
    throw err;
  });
  const c = content as Partial<PermissionConfig> | null;
  if (!c || (c.defaultSetting !== "allow all" && c.defaultSetting !== "block all"))
    return { ...DEFAULT_PERMISSION_CONFIG };
  return c as PermissionConfig;
}

async function writeConfig(
  client: MatrixClient,
  type: PermissionConfigType,
  config: PermissionConfig,
): Promise<void> {
  await client.setAccountData(type as never, config as never);
}

export const modeOf = (c: PermissionConfig): AuthorizationMode =>
  c.defaultSetting === "block all" ? "BlockAll" : "AllowAll";

/**
 * Switching the mode drops the exceptions: under the other default they would mean the opposite
 * (a blocked user would become an allowed one).
 */
export async function setMode(
  client: MatrixClient,
  type: PermissionConfigType,
  mode: unknown,
): Promise<AuthorizationMode> {
  if (mode !== "AllowAll" && mode !== "BlockAll")
    throw badRequest('the body must be "AllowAll" or "BlockAll"');
  const current = await readConfig(client, type);
  if (modeOf(current) === mode) return mode;
  await writeConfig(client, type, { defaultSetting: mode === "BlockAll" ? "block all" : "allow all" });
  return mode;
}

export function listOf(c: PermissionConfig): AuthorizationList {
  return {
    mxids: Object.keys(c.userExceptions ?? {}).map((mxid) => ({ mxid })),
    serverNames: Object.keys(c.serverExceptions ?? {}).map((serverName) => ({ serverName })),
    groupNames: (c.groupExceptions ?? []).map((g) => g.groupName),
  };
}

function parseList(body: unknown): AuthorizationList {
  const b = (body ?? {}) as Partial<AuthorizationList>;
  const arr = (v: unknown, field: string): unknown[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw badRequest(`${field} must be an array`);
    return v;
  };
  const mxids = arr(b.mxids, "mxids").map((m) => {
    const id = (m as { mxid?: unknown }).mxid;
    if (typeof id !== "string" || !id.startsWith("@"))
      throw badRequest("mxids[].mxid must be a Matrix user ID");
    return { mxid: id };
  });
  const serverNames = arr(b.serverNames, "serverNames").map((s) => {
    const name = (s as { serverName?: unknown }).serverName;
    if (typeof name !== "string" || name === "")
      throw badRequest("serverNames[].serverName must be a server name");
    return { serverName: name };
  });
  const groupNames = arr(b.groupNames, "groupNames").map((g) => {
    if (g !== "isInsuredPerson") throw badRequest('groupNames may only contain "isInsuredPerson"');
    return g;
  });
  return { mxids, serverNames, groupNames };
}

/**
 * Adds or removes exceptions. Allowed users are the exceptions of "block all", blocked users
 * those of "allow all"; the list of the other mode is refused (403, as the document says).
 */
export async function changeList(
  client: MatrixClient,
  type: PermissionConfigType,
  list: "allowed" | "blocked",
  change: "add" | "remove" | "read",
  body?: unknown,
): Promise<AuthorizationList> {
  const config = await readConfig(client, type);
  const wanted: AuthorizationMode = list === "allowed" ? "BlockAll" : "AllowAll";
  if (modeOf(config) !== wanted)
    throw new DriverError(
      403,
      "WRONG_AUTHORIZATION_MODE",
      `the ${list} users list exists only in mode ${wanted}; the current mode is ${modeOf(config)}`,
    );
  if (change === "read") return listOf(config);
  const delta = parseList(body);
  const apply = (current: Iterable<string>, names: string[]): string[] => {
    const set = new Set(current);
    for (const n of names)
      if (change === "add") set.add(n);
      else set.delete(n);
    return [...set];
  };
  // An exception's object is reserved "for future enhancement": kept as it was for names that stay.
  const keep = (old: Record<string, object> | undefined, names: string[]) =>
    Object.fromEntries(names.map((n) => [n, old?.[n] ?? {}]));
  const users = keep(
    config.userExceptions,
    apply(
      Object.keys(config.userExceptions ?? {}),
      delta.mxids.map((m) => m.mxid),
    ),
  );
  const servers = keep(
    config.serverExceptions,
    apply(
      Object.keys(config.serverExceptions ?? {}),
      delta.serverNames.map((s) => s.serverName),
    ),
  );
  const groups = apply(
    (config.groupExceptions ?? []).map((g) => g.groupName),
    delta.groupNames,
  );
  const next: PermissionConfig = {
    ...config,
    userExceptions: users,
    serverExceptions: servers,
    groupExceptions: groups.map((groupName) => ({ groupName })),
  };
  await writeConfig(client, type, next);
  return listOf(next);
}
