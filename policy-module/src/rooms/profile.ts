import { z } from "zod";

/**
 * The organisation's rule profile: MedMesh's own defaults, or gematik TI-Messenger's for an
 * organisation of professionals (tim-pro) or of insured persons (tim-epa). docs/tim-profile.md
 * lists every difference and where it is enforced.
 */
export const ProfileSchema = z
  .enum(["medmesh", "tim-pro", "tim-epa"])
  .default("medmesh")
  .describe(
    "Rule profile: MedMesh's own defaults, or gematik TI-Messenger's for an organisation of " +
      "professionals (tim-pro) or of insured persons (tim-epa); see docs/tim-profile.md.",
  );
export type Profile = z.output<typeof ProfileSchema>;

export const isTim = (p: Profile): boolean => p === "tim-pro" || p === "tim-epa";

// MedMesh's own accounts (bots, appservice senders, the admin account, the bridge) act for the
// organisation, not for a patient.
const SERVICE_ACCOUNT = /^@medmesh(-[a-z]+)?:/;

/**
 * Whether a user is an insured person as far as this organisation knows: a person (not one of
 * MedMesh's service accounts) of an ePA organisation — this one, or another the caller says is one.
 */
export function insuredPerson(
  userId: string,
  own: { serverName: string; profile: Profile },
  profileOf: (server: string) => Profile | undefined = () => undefined,
): boolean {
  const i = userId.indexOf(":");
  if (i < 0 || SERVICE_ACCOUNT.test(userId)) return false;
  const server = userId.slice(i + 1);
  const profile = server === own.serverName ? own.profile : profileOf(server);
  return profile === "tim-epa";
}
