import type { Migration } from "@medmesh/common";
import { BOT_MIGRATIONS } from "./bot/index.ts";
import { CHANNELS_MIGRATIONS } from "./channels/index.ts";
import { GROUPS_MIGRATIONS } from "./groups/index.ts";
import { CONSOLE_MIGRATIONS } from "./console/index.ts";
import { DEPARTMENTS_MIGRATIONS } from "./departments/migrations.ts";
import { IDENTITY_MIGRATIONS } from "./identity/migrations.ts";
import { RETENTION_MIGRATIONS } from "./retention/migrations.ts";

/** The tables of the policy module's capabilities (beside the store's own), in one composed list. */
export const POLICY_MODULE_MIGRATIONS: readonly Migration[] = [
  ...IDENTITY_MIGRATIONS,
  ...RETENTION_MIGRATIONS,
  ...GROUPS_MIGRATIONS,
  ...CONSOLE_MIGRATIONS,
  ...CHANNELS_MIGRATIONS,
  ...DEPARTMENTS_MIGRATIONS,
  ...BOT_MIGRATIONS,
];
