export * from "./permission-config.ts";
export { createInviteGate } from "./gate.ts";
