import { runServiceMain } from "@medmesh/common";
import { PolicyModuleConfigSchema } from "./config.ts";
import { start } from "./start.ts";

await runServiceMain(PolicyModuleConfigSchema, start);
