import { ApiError } from "@medmesh/common";
import type { BotMessage } from "../bot/index.ts";
import type { VerificationRecord } from "./records.ts";
import type { VerificationOutcome, Verifier } from "./verifier.ts";

export const HELP = [
  "I am the MedMesh bot. I verify your professional registration so that colleagues see you as a verified clinician.",
  "• verify BIG 19012345601 — check your BIG registration (Netherlands)",
  "• verify RIZIV 10012345001 — check your RIZIV/INAMI number (Belgium)",
  "  add your name as the registry lists it if your display name differs: verify BIG 19012345601 Jan de Vries",
  "• status — where your verification stands",
].join("\n");

const date = (iso: string): string => iso.slice(0, 10);
const size = (bytes: number): string =>
  bytes >= 1048576 ? `${String(Math.floor(bytes / 1048576))} MB` : `${String(Math.ceil(bytes / 1024))} KB`;

/** Plain-language text for an outcome, as the bot tells it. */
export function describeOutcome(
  o: VerificationOutcome,
  idDocument?: { types: string[]; maxBytes: number },
): string {
  switch (o.status) {
    case "verified":
      return `You are verified as ${o.profession} until ${date(o.expires_at)}. Colleagues now see your verified badge. I re-check the registry regularly.`;
    case "pending":
      return `The registry has not answered yet (${o.reason}). Your check stays pending and I try again; I will tell you the result. You are not verified until then.`;
    case "awaiting_document":
      return (
        "The registry confirmed your registration. Your organisation also asks for an ID document: send me a photo or scan of it here" +
        (idDocument ? ` (${idDocument.types.join(", ")}, at most ${size(idDocument.maxBytes)})` : "") +
        ". An admin of your organisation reviews it and it is deleted after the decision."
      );
    case "in_review":
      return "Your ID document is with your organisation's admin for review. I will tell you the decision.";
    case "rejected":
      return `Your verification was not accepted: ${o.reason}`;
    case "revoked":
      return `Your verified status was withdrawn: ${o.reason}`;
  }
}

/** What the bot tells a user (and the organisation's admins) when their status changed without them asking. */
export function describeChange(r: VerificationRecord): { user: string; admins?: string } | undefined {
  switch (r.status) {
    case "verified":
      return {
        user: describeOutcome({
          status: "verified",
          profession: r.profession ?? "",
          expires_at: (r.expires_at ?? new Date()).toISOString(),
        }),
      };
    case "rejected":
      return { user: describeOutcome({ status: "rejected", reason: r.reason ?? "" }) };
    case "revoked":
      return {
        user: describeOutcome({ status: "revoked", reason: r.reason ?? "" }),
        admins: `${r.user_id} is no longer a verified clinician (${r.registry}): ${r.reason ?? "no reason given"}.`,
      };
    default:
      return undefined;
  }
}

/** What the bot tells the organisation's reviewers when an ID document waits for them. */
export function reviewWaiting(r: VerificationRecord): string {
  const conflict = r.conflict_with
    ? ` Their registration number is already bound to ${r.conflict_with}: check which account is the person's.`
    : "";
  return (
    `${r.user_id} sent an ID document for their ${r.registry} verification; it waits for your review ` +
    `in the admin console (Verification queue).${conflict}`
  );
}

/**
 * The bot's side of a direct chat about verification: `verify <registry> <number> [name]`,
 * `status`, `help`, and an ID document sent as an image or file when one is awaited.
 */
export function verificationConversation(d: {
  verifier: Verifier;
  displayName(userId: string): Promise<string | undefined>;
  idDocument: { types: string[]; maxBytes: number };
}) {
  const explain = (o: VerificationOutcome): string => describeOutcome(o, d.idDocument);
  const tooLarge = `That file is too large: at most ${size(d.idDocument.maxBytes)}. Nothing was stored.`;
  const refusal = (err: unknown): string => {
    if (err instanceof ApiError) return `I could not start the check: ${err.message}`;
    throw err;
  };

  return async (m: BotMessage): Promise<string | undefined> => {
    if (m.kind === "file") {
      const status = await d.verifier.status(m.sender);
      if (status?.status !== "awaiting_document")
        return "I only take an ID document when your verification asks for one. Nothing was stored.";
      if (!d.idDocument.types.includes(m.contentType))
        return `I cannot take a ${m.contentType} file: send the document as ${d.idDocument.types.join(", ")}. Nothing was stored.`;
      if (m.size > d.idDocument.maxBytes) return tooLarge;
      const data = await m.download();
      if (data.length > d.idDocument.maxBytes) return tooLarge;
      try {
        return explain(await d.verifier.documentUploaded(m.sender, m.contentType, data));
      } catch (err) {
        return refusal(err);
      }
    }
    const [command = "", ...args] = m.body.trim().split(/\s+/);
    switch (command.toLowerCase()) {
      case "verify": {
        // Numbers are often written in groups ("190 1234 5601"): the digits up to the first word.
        const [registry, ...rest] = args;
        const split = rest.findIndex((t) => !/^[\d.-]+$/.test(t));
        const number = (split === -1 ? rest : rest.slice(0, split)).join("");
        const name = split === -1 ? [] : rest.slice(split);
        if (!registry || !number)
          return `Tell me the registry and your number, for example: verify BIG 19012345601\n\n${HELP}`;
        const claimed = name.join(" ") || (await d.displayName(m.sender)) || "";
        if (!claimed) return "I need your name as the registry lists it: verify BIG 19012345601 Jan de Vries";
        try {
          const outcome = await d.verifier.start(m.sender, {
            registry,
            number,
            claimed_name: claimed,
          });
          return `I checked your ${registry.toUpperCase()} registration with the registry.\n${explain(outcome)}`;
        } catch (err) {
          return refusal(err);
        }
      }
      case "status": {
        const status = await d.verifier.status(m.sender);
        return status ? explain(status) : "You have not asked to be verified yet.\n\n" + HELP;
      }
      default:
        return HELP;
    }
  };
}
