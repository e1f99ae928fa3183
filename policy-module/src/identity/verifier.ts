import { ApiError, type AuditLog } from "@medmesh/common";
import type { Logger } from "pino";
import {
  NumberInUseError,
  NUMBER_IN_USE_MESSAGE,
  type IdentityDocuments,
  type VerificationRecord,
  type VerificationRecords,
  type VerificationStatus,
} from "./records.ts";
import { applyAnswer } from "./answer.ts";
import { createNumberClaims } from "./number-claims.ts";
import { RegistryUnavailableError, type RegistryAdapter } from "./registries/types.ts";

export interface VerificationRequest {
  registry: string;
  number: string;
  claimed_name: string;
}

export type VerificationOutcome =
  | { status: "verified"; profession: string; expires_at: string }
  | { status: "pending" | "awaiting_document" | "in_review"; reason: string }
  | { status: "rejected" | "revoked"; reason: string };

export interface VerifierDeps {
  serverName: string;
  records: VerificationRecords;
  registries: ReadonlyMap<string, RegistryAdapter>;
  audit: AuditLog;
  log: Logger;
  /** How long one successful registry check keeps a clinician verified. */
  validityMs: number;
  /** Told about every change of status (directory, attestations, notices) and who caused it. */
  onChange?: (record: VerificationRecord, actor: string) => void;
  /** The organisation wants an ID document reviewed before a first verification. */
  requireDocument?: boolean;
  documents?: IdentityDocuments;
  /** The organisation's identity provider that proved who a user is (their account came from its SSO). */
  identityProvider?: (userId: string) => Promise<string | undefined>;
  /** The organisation's name, as "identity proven by …" names it. */
  organisationName?: string;
  /**
   * A number another account of the organisation holds: refused (default) or sent to the admin's
   * review with the conflict shown (identity.duplicate_number).
   */
  duplicateNumber?: "refuse" | "review";
  /** Is this account deactivated (Synapse)? Its number is then released to whoever claims it. */
  accountGone?: (userId: string) => Promise<boolean>;
}

const ACTOR = (server: string): string => `@medmesh:${server}`;

/** Where a check's writes go: the record and its audit, together (re-verification: one transaction). */
export interface CheckWriters {
  records: Pick<VerificationRecords, "put">;
  audit: AuditLog;
}
/** Runs a check's writes (given the record as it will be stored), e.g. in a transaction under a lease. */
export type CheckCommit = (
  next: VerificationRecord,
  write: (w: CheckWriters) => Promise<void>,
) => Promise<void>;

/**
 * The verification workflow: format and check digit, the registry's answer, the registration's
 * status, and the registered name against the claimed one. Only an active registration with a
 * matching name verifies; an unreachable registry leaves the request pending (retried by the
 * re-verification job), never verified. Every check is audited, without the registration number.
 */
export function createVerifier(d: VerifierDeps) {
  const adapter = (registry: string): RegistryAdapter => {
    const a = d.registries.get(registry.toUpperCase());
    if (!a) {
      throw new ApiError(
        "M_INVALID_PARAM",
        `Unknown registry ${registry}; this organisation checks ${[...d.registries.keys()].join(", ")}`,
      );
    }
    return a;
  };

  /** "identity proven by <organisation>": the account came from the organisation's own SSO. */
  const identityProvenBy = (r: VerificationRecord): string | undefined =>
    r.identity_provider === null ? undefined : (d.organisationName ?? d.serverName);

  const audit = async (
    r: VerificationRecord,
    action: string,
    actor: string,
    extra: Record<string, unknown> = {},
    log: AuditLog = d.audit,
  ): Promise<void> => {
    await log.record({
      actor,
      on_behalf_of: r.user_id,
      action,
      object: r.user_id,
      outcome: r.status,
      details: {
        registry: r.registry,
        ...(r.reason ? { reason: r.reason } : {}),
        ...(r.identity_provider ? { identity_provider: r.identity_provider } : {}),
        ...extra,
      },
    });
  };

  /** One registry check of a stored record; `actor` is who asked (the user, or the scheduled job). */
  const check = async (
    record: VerificationRecord,
    actor: string,
    now = new Date(),
    commit?: CheckCommit,
  ): Promise<VerificationRecord> => {
    let next: VerificationRecord;
    try {
      const registry = d.registries.get(record.registry.toUpperCase());
      // A registry taken out of the config: the record is not checked (and runs out at its expiry).
      if (!registry)
        throw new RegistryUnavailableError(
          "removed",
          `this organisation no longer checks ${record.registry}`,
        );
      const answer = await registry.lookup(record.registration_number);
      next = { ...applyAnswer(record, answer, now, answerRules), attempts: 0 };
    } catch (err) {
      if (!(err instanceof RegistryUnavailableError)) throw err;
      d.log.warn(
        { user_id: record.user_id, registry: record.registry, kind: err.kind, reason: err.message },
        "registry unavailable",
      );
      // Unreachable is never a reason to extend: a verified record keeps its expiry, and runs out.
      const expired = record.status === "verified" && record.expires_at !== null && record.expires_at <= now;
      next = {
        ...record,
        status: expired ? "revoked" : record.status,
        reason: expired
          ? "The registry could not be reached to re-check this registration before it expired"
          : err.kind === "removed"
            ? `This organisation no longer checks ${record.registry}; ask its admin (the verification runs out at its expiry)`
            : `The registry could not be reached (${err.kind}); the check will be retried`,
        attempts: record.attempts + 1,
      };
    }
    const stored: VerificationRecord = { ...next, last_checked_at: now, updated_at: now };
    const write = async (w: CheckWriters): Promise<void> => {
      await w.records.put(stored);
      if (stored.status !== record.status || record.status === "pending")
        await audit(stored, "identity.check", actor, {}, w.audit);
    };
    await (commit ? commit(stored, write) : write({ records: d.records, audit: d.audit }));
    if (stored.status !== record.status) d.onChange?.(stored, actor);
    return stored;
  };

  const transition = async (
    userId: string,
    from: VerificationStatus,
    actor: string,
    action: string,
    change: (r: VerificationRecord, now: Date) => VerificationRecord,
  ): Promise<VerificationRecord> => {
    const r = await d.records.get(userId);
    if (r?.status !== from) {
      throw new ApiError("M_FORBIDDEN", `${userId} has no verification ${from.replace("_", " ")}`);
    }
    const now = new Date();
    const next = { ...change(r, now), updated_at: now };
    await d.records.put(next);
    await audit(next, action, actor);
    d.onChange?.(next, actor);
    return next;
  };

  /** A new request starts afresh; a verified user re-applying with other data loses status until checked. */
  const fresh = (
    userId: string,
    registry: string,
    number: string,
    claimedName: string,
    identityProvider: string | null,
  ): VerificationRecord => ({
    user_id: userId,
    registry,
    registration_number: number,
    claimed_name: claimedName.trim(),
    registered_name: null,
    profession: null,
    specialisms: [],
    status: "pending",
    reason: null,
    verified_at: null,
    expires_at: null,
    last_checked_at: null,
    attempts: 0,
    updated_at: new Date(),
    identity_provider: identityProvider,
  });

  const answerRules = { requireDocument: d.requireDocument === true, validityMs: d.validityMs };
  const claims = createNumberClaims({
    records: d.records,
    audit: d.audit,
    auditRecord: audit,
    ...(d.onChange ? { onChange: d.onChange } : {}),
    duplicateNumber: d.duplicateNumber ?? "refuse",
    ...(d.accountGone ? { accountGone: d.accountGone } : {}),
    validityMs: d.validityMs,
    actor: ACTOR(d.serverName),
  });

  const begin = async (
    record: VerificationRecord,
    actor: string,
    known?: VerificationRecord,
  ): Promise<VerificationOutcome> => {
    const previous = known ?? (await d.records.get(record.user_id));
    const holder = await claims.holderOf(record);
    const claimed = holder === undefined ? record : await claims.conflicted(record, holder, actor);
    let checked: VerificationRecord;
    try {
      checked = await check(claimed, actor, record.updated_at);
    } catch (err) {
      // Another request bound the number between our look-up and our write (the store's index).
      if (!(err instanceof NumberInUseError)) throw err;
      const winner = await claims.holderOf(claimed);
      if (winner === undefined) throw err;
      checked = await check(await claims.conflicted(claimed, winner, actor), actor, record.updated_at);
    }
    if (previous?.status === "verified" && checked.status !== "verified") d.onChange?.(checked, actor);
    return outcomeOf(checked);
  };

  const outcomeOf = (r: VerificationRecord): VerificationOutcome =>
    r.status === "verified"
      ? {
          status: "verified",
          profession: r.profession ?? "",
          expires_at: (r.expires_at ?? new Date()).toISOString(),
        }
      : { status: r.status, reason: r.reason ?? "" };

  return {
    /** A user (or an admin on their behalf) asks to be verified. Bad input is refused and stores nothing. */
    async start(userId: string, req: VerificationRequest, actor = userId): Promise<VerificationOutcome> {
      const registry = adapter(req.registry);
      const number = registry.validateNumber(req.number);
      if (!number.ok) {
        await d.audit.record({
          actor,
          on_behalf_of: userId,
          action: "identity.request",
          object: userId,
          outcome: "invalid",
          details: { registry: registry.registry, reason: number.reason },
        });
        throw new ApiError("M_INVALID_PARAM", number.reason);
      }
      if (!req.claimed_name.trim())
        throw new ApiError("M_INVALID_PARAM", "Give your name as the registry lists it");
      const identityProvider = (await d.identityProvider?.(userId)) ?? null;
      return begin(
        fresh(userId, registry.registry, number.normalised, req.claimed_name, identityProvider),
        actor,
      );
    },
    /**
     * The organisation's identity provider asserted the registration number (a claim of its
     * single sign-on): checked against the registry like a typed one. Unchanged claims of a
     * clinician who is verified or waiting are not checked again (the scheduled run does that).
     */
    async fromOrganisation(
      userId: string,
      req: VerificationRequest,
      identityProvider: string,
    ): Promise<VerificationOutcome> {
      const registry = adapter(req.registry);
      const number = registry.validateNumber(req.number);
      const previous = await d.records.get(userId);
      if (
        number.ok &&
        previous?.registry === registry.registry &&
        previous.registration_number === number.normalised &&
        previous.identity_provider === identityProvider &&
        ["verified", "pending", "awaiting_document", "in_review"].includes(previous.status)
      ) {
        return outcomeOf(previous);
      }
      const record = fresh(
        userId,
        registry.registry,
        number.ok ? number.normalised : req.number.slice(0, 64),
        req.claimed_name,
        identityProvider,
      );
      const by = d.organisationName ?? "your organisation";
      const problem = !number.ok
        ? `The registration number ${by}'s identity provider gives is not a valid ${registry.registry} number: ${number.reason}`
        : !req.claimed_name.trim()
          ? `${by}'s identity provider did not give your name, so the registration cannot be matched to you`
          : undefined;
      if (problem) {
        const now = new Date();
        const rejected: VerificationRecord = {
          ...record,
          status: "rejected",
          reason: problem,
          last_checked_at: now,
          updated_at: now,
        };
        await d.records.put(rejected);
        await audit(rejected, "identity.request", ACTOR(d.serverName));
        d.onChange?.(rejected, ACTOR(d.serverName));
        return outcomeOf(rejected);
      }
      try {
        return await begin(record, ACTOR(d.serverName), previous);
      } catch (err) {
        if (!(err instanceof NumberInUseError)) throw err;
        // The identity provider's claim cannot be refused to anyone: the account is told why.
        const now = new Date();
        const rejected: VerificationRecord = {
          ...record,
          status: "rejected",
          reason: NUMBER_IN_USE_MESSAGE,
          last_checked_at: now,
          updated_at: now,
        };
        await d.records.put(rejected);
        d.onChange?.(rejected, ACTOR(d.serverName));
        return outcomeOf(rejected);
      }
    },
    check,
    /** The user's ID document arrived: it goes to the admin's review queue. */
    async documentUploaded(userId: string, contentType: string, data: Buffer): Promise<VerificationOutcome> {
      const r = await d.records.get(userId);
      if (r?.status !== "awaiting_document") {
        throw new ApiError("M_FORBIDDEN", "No verification of yours is waiting for an ID document");
      }
      await d.documents?.put({ user_id: userId, content_type: contentType, data, uploaded_at: new Date() });
      const next = await transition(userId, "awaiting_document", userId, "identity.document", (rec) => ({
        ...rec,
        status: "in_review",
        reason: "Your ID document is with the organisation's admin for review",
      }));
      return outcomeOf(next);
    },
    /** The admin's decision; the document is deleted either way. */
    async review(
      userId: string,
      approve: boolean,
      reason: string,
      reviewer: string,
    ): Promise<VerificationOutcome> {
      const current = await d.records.get(userId);
      if (approve && current?.status === "in_review" && current.conflict_with !== undefined) {
        const next = await claims.approve(current, reviewer);
        await d.documents?.delete(userId);
        return outcomeOf(next);
      }
      const next = await transition(userId, "in_review", reviewer, "identity.review", (r, now) =>
        approve
          ? {
              ...r,
              status: "verified",
              reason: null,
              verified_at: now,
              expires_at: new Date(now.getTime() + d.validityMs),
            }
          : {
              ...r,
              status: "rejected",
              reason: reason || "The organisation's admin did not accept the ID document",
            },
      );
      await d.documents?.delete(userId);
      return outcomeOf(next);
    },
    reviewQueue: () => d.records.withStatus("in_review"),
    /** Synapse reported this account deactivated: its number is released (docs/identity.md). */
    deactivated: async (userId: string, byAdmin: boolean) =>
      claims.deactivated(await d.records.get(userId), { by_admin: byAdmin }),
    /** The re-verification run found the account deactivated (a report that never arrived). */
    releaseDeactivated: (record: VerificationRecord, commit?: CheckCommit) =>
      claims.deactivated(record, { found_by: "reverify" }, commit),
    async status(
      userId: string,
    ): Promise<(VerificationOutcome & { registry: string; identity_proven_by?: string }) | undefined> {
      const r = await d.records.get(userId);
      const provenBy = r && identityProvenBy(r);
      return (
        r && { ...outcomeOf(r), registry: r.registry, ...(provenBy ? { identity_proven_by: provenBy } : {}) }
      );
    },
    identityProvenBy,
    actor: ACTOR(d.serverName),
  };
}
export type Verifier = ReturnType<typeof createVerifier>;

export type { VerificationStatus };
