import type { DeploymentConfig, OrganisationConfig } from "./config/schema.ts";

const MiB = 1024 * 1024;
const PRODUCTION_LIMITS = {
  json_body_bytes: MiB,
  media_body_bytes: 50 * MiB, // Synapse's default max_upload_size, now generated from it
  federation_body_bytes: 20 * MiB,
  requests_per_second: 20,
  burst: 100,
  headers_timeout_ms: 30_000,
  body_idle_timeout_ms: 60_000,
};
// Tests and benchmarks drive many requests from one user; the limits stay finite.
const TEST_PROFILE_LIMITS = { ...PRODUCTION_LIMITS, requests_per_second: 2000, burst: 5000 };

/** The proxy's limits for an organisation: the profile's, with the organisation's overrides. */
export function proxyLimits(deployment: DeploymentConfig, org: OrganisationConfig): typeof PRODUCTION_LIMITS {
  const overrides = Object.entries(org.proxy_limits).filter(([, v]) => v !== undefined);
  return {
    ...(deployment.profile === "test" ? TEST_PROFILE_LIMITS : PRODUCTION_LIMITS),
    ...(Object.fromEntries(overrides) as Partial<typeof PRODUCTION_LIMITS>),
  };
}
