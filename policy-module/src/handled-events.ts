/**
 * The most recent event IDs whose side effects (a badge, an audited reaction) ran in this process:
 * the appservice frame may hand an event over again (a transaction resent after a failure, a dead
 * letter retried), and the effect is not repeated. Bounded; oldest out first.
 */
export function handledEvents(max = 10_000) {
  const ids = new Set<string>();
  return {
    has: (eventId: string | undefined): boolean => eventId !== undefined && ids.has(eventId),
    add(eventId: string | undefined): void {
      if (eventId === undefined) return;
      ids.add(eventId);
      if (ids.size > max) ids.delete(ids.values().next().value ?? "");
    },
  };
}
