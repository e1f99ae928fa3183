import { runServiceMain } from "@medmesh/common";
import { BridgeConfigSchema } from "./config.ts";
import { start } from "./start.ts";

await runServiceMain(BridgeConfigSchema, start);
