import { isTim, type Profile } from "../rooms/profile.ts";
import { forbidden, Refusal } from "./context.ts";
import type { DirectoryGate } from "./policy.ts";
import { CLIENT, route, type Route } from "./router.ts";

export interface TimRuleDeps {
  profile: Profile;
  /** Whether a user is an insured person (rooms/profile.ts insuredPerson, with the trust list). */
  insured: (userId: string) => boolean;
  directory: DirectoryGate;
  /** Synapse's client listener, for the user-directory searches the proxy filters. */
  upstream: URL;
  jsonLimit: number;
  /** Where the organisation's people find help (`proxy.support_page`). */
  supportPage: string | undefined;
}

/**
 * The request-level parts of the TI-Messenger profile (docs/tim-profile.md) that the proxy answers
 * itself; the endpoint table opens or closes the rest (previews, legacy media, well-known).
 */
export function timClientRules(d: TimRuleDeps): Route[] {
  if (!isTim(d.profile)) return [];
  return [
    // MSC1929, in the spec since v1.10: at least one of contacts and support_page.
    route("GET", String.raw`^/\.well-known/matrix/support`, () => {
      if (d.supportPage === undefined) {
        throw new Refusal(404, "M_NOT_FOUND", "This organisation has not configured a support page");
      }
      return Promise.resolve({ status: 200, body: { support_page: d.supportPage } });
    }),
    // Insured persons and professionals do not find each other in user searches: the verified
    // directory's answer, or Synapse's (people one shares a room with), without the other kind.
    route("POST", `${CLIENT}/user_directory/search`, async (ctx) => {
      const requester = await ctx.requireRequester();
      const body = await ctx.json(d.jsonLimit);
      const own = await d.directory.search(requester, body);
      let status: number;
      let answer: unknown;
      if (own) {
        ({ status, body: answer } = own);
      } else {
        const res = await fetch(new URL(ctx.rawPath + ctx.url.search, d.upstream), {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(ctx.req.headers.authorization ? { authorization: ctx.req.headers.authorization } : {}),
          },
          body: JSON.stringify(body),
        });
        status = res.status;
        answer = await res.json();
      }
      return { status, body: status === 200 ? sameKindOnly(answer, requester.userId, d.insured) : answer };
    }),
    route(["GET", "POST"], `${CLIENT}/publicRooms`, async (ctx) => {
      await ctx.requireRequester();
      if (d.profile === "tim-epa") throw forbidden("Insured persons cannot list public rooms");
      return undefined;
    }),
  ];
}

/** A user-directory answer without the users of the other kind (insured person or not) than the searcher. */
export function sameKindOnly(
  answer: unknown,
  searcher: string,
  insured: (userId: string) => boolean,
): unknown {
  const result = answer as { results?: unknown } | null;
  if (typeof result !== "object" || result === null || !Array.isArray(result.results)) return answer;
  const kind = insured(searcher);
  const results = (result.results as { user_id?: unknown }[]).filter(
    (r) => typeof r.user_id === "string" && insured(r.user_id) === kind,
  );
  return { ...result, results };
}
