import { CONFLICT_REASON } from "./number-claims.ts";
import type { VerificationRecord } from "./records.ts";
import { matchesRegisteredName } from "./registries/name-match.ts";
import type { RegistryRecord } from "./registries/types.ts";

/**
 * Applies the registry's answer (or its absence) to a record: unknown, struck off, suspended or
 * another name → rejected (revoked when it was verified); otherwise verified, or first an ID
 * document and the admin's review where the organisation asks for one or the number is
 * another account's.
 */
export function applyAnswer(
  r: VerificationRecord,
  answer: RegistryRecord | undefined,
  now: Date,
  rules: { requireDocument: boolean; validityMs: number },
): VerificationRecord {
  const failed = (reason: string): VerificationRecord => ({
    ...r,
    status: r.status === "verified" ? "revoked" : "rejected",
    reason,
    expires_at: null,
  });
  if (!answer) return failed("The registry does not know this registration number");
  if (answer.status !== "active") {
    return failed(
      `The registry lists this registration as ${answer.status === "struck_off" ? "struck off" : "suspended"}`,
    );
  }
  const name = matchesRegisteredName(r.claimed_name, answer.name);
  if (!name.ok) return failed(name.reason);
  // A first verification waits for the admin's look at an ID document where the organisation
  // asks for one, unless the organisation's own identity provider proved who the person is.
  // A number another account holds is always a person's decision: an ID document for a
  // self-registered account, the admin's review (of the organisation's own proof) for SSO.
  const conflict = r.status === "pending" && r.conflict_with !== undefined;
  const needsDocument =
    r.status === "pending" && r.identity_provider === null && (rules.requireDocument || conflict);
  const needsReview = conflict && !needsDocument;
  if (needsReview) {
    return {
      ...r,
      status: "in_review",
      reason: CONFLICT_REASON,
      registered_name: answer.name.full,
      profession: answer.profession,
      specialisms: answer.specialisms,
      expires_at: null,
    };
  }
  return {
    ...r,
    status: needsDocument ? "awaiting_document" : "verified",
    reason: null,
    registered_name: answer.name.full,
    profession: answer.profession,
    specialisms: answer.specialisms,
    verified_at: r.status === "verified" && r.verified_at ? r.verified_at : now,
    expires_at: needsDocument ? null : new Date(now.getTime() + rules.validityMs),
    ...(needsDocument
      ? {
          reason: conflict
            ? `${CONFLICT_REASON}: upload an ID document for the admin to review`
            : "The registry confirmed your registration; upload an ID document for the organisation's admin to review",
        }
      : {}),
  };
}
