export { createDecider, type Decider } from "./decider.ts";
export { DECIDE_PATH, decisionRouteGroup, mountDecisionApi } from "./routes.ts";
export { QUESTIONS, type Check } from "./questions.ts";
