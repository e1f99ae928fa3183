import type { VerifiedClinician } from "../identity/verification.ts";

/**
 * In-memory search over the organisation's verified clinicians: every word of the query must
 * occur in the display name or user ID (case- and accent-insensitive). A linear scan over
 * pre-folded strings answers 10,000 entries well inside the directory's latency budget.
 */
export function createSearchIndex(clinicians: readonly VerifiedClinician[]): {
  search(term: string, limit: number): { results: VerifiedClinician[]; limited: boolean };
  get(userId: string): VerifiedClinician | undefined;
} {
  const entries = clinicians.map((c) => ({ c, text: fold(`${c.display_name} ${c.user_id}`) }));
  const byId = new Map(clinicians.map((c) => [c.user_id, c]));
  return {
    search(term, limit) {
      const words = fold(term).split(/\s+/).filter(Boolean);
      const results: VerifiedClinician[] = [];
      for (const e of entries) {
        if (!words.every((w) => e.text.includes(w))) continue;
        if (results.length === limit) return { results, limited: true };
        results.push(e.c);
      }
      return { results, limited: false };
    },
    get: (userId) => byId.get(userId),
  };
}

export function fold(s: string): string {
  return s.normalize("NFD").replace(/\p{M}/gu, "").toLowerCase();
}
