import { Registry, collectDefaultMetrics } from "prom-client";

/** One registry per service instance; passed in, never global, so tests can run several services in a process. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}
