export { createDecider, type Decider } from "./decider.ts";
export { DECIDE_PATH, mountDecisionApi } from "./routes.ts";
export { QUESTIONS, type Check } from "./questions.ts";
