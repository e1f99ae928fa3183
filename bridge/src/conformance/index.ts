export {
  runConformance,
  startConformanceKit,
  type CheckResult,
  type ConformanceKit,
  type KitOptions,
  type TargetOptions,
} from "./kit.ts";
