import type { Requester } from "./requester.ts";
import type { OwnResponse } from "./context.ts";

/** The trust list as the proxy needs it; an organisation without a trust list federates openly. */
export interface TrustView {
  /** False for every server while a configured trust list has never been loaded (fail closed). */
  isTrusted(serverName: string): boolean;
}

export type Decision = { allowed: true } | { allowed: false; reason: string };

/** Invite permissions (TI-Messenger permission config plus the organisation default). */
export interface InviteGate {
  check(inviter: string, invitee: string): Promise<Decision>;
  /** A user's permission config changed (seen passing through the proxy). */
  changed(userId: string): void;
}

/** The verified-clinician directory: answers searches and profile look-ups itself when it may. */
export interface DirectoryGate {
  search(requester: Requester, body: Record<string, unknown>): Promise<OwnResponse | undefined>;
  profile(requester: Requester, userId: string, field: string | undefined): Promise<OwnResponse | undefined>;
}

/** "@user:server.example:8448" → "server.example:8448" (a server name may carry a port). */
export function serverOf(id: string): string | undefined {
  const i = id.indexOf(":");
  return i > 0 && i < id.length - 1 ? id.slice(i + 1) : undefined;
}

export function isUserId(v: unknown): v is string {
  return typeof v === "string" && /^@[^:]+:.+$/.test(v) && v.length <= 255;
}
