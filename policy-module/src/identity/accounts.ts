import type { SynapseAdmin } from "@medmesh/common";

/*
 * What Synapse knows of this organisation's accounts that identity needs: whether an account is
 * deactivated (its registration number is then released, docs/identity.md "A deactivated account").
 */

/** Is this account deactivated? Unknown or unreachable: no (the number stays bound, the safe side). */
export async function accountGone(admin: SynapseAdmin, userId: string): Promise<boolean> {
  const user = await admin
    .request<{ deactivated?: boolean }>("GET", `/_synapse/admin/v2/users/${encodeURIComponent(userId)}`)
    .catch(() => ({ deactivated: false }));
  return user.deactivated === true;
}

/**
 * Every deactivated account of this server, for one re-verification run: a few paged calls (Synapse's
 * list accounts v3, `deactivated=true`), not one call per clinician. Throws when Synapse cannot be
 * asked; the run then checks everyone as before.
 */
export async function deactivatedAccounts(admin: SynapseAdmin): Promise<ReadonlySet<string>> {
  const gone = new Set<string>();
  let from: string | undefined = "0";
  while (from !== undefined) {
    const page: { users?: { name: string }[]; next_token?: string | number } = await admin.request(
      "GET",
      `/_synapse/admin/v3/users?deactivated=true&limit=1000&from=${encodeURIComponent(from)}`,
    );
    for (const u of page.users ?? []) gone.add(u.name);
    from = page.next_token === undefined ? undefined : String(page.next_token);
  }
  return gone;
}
