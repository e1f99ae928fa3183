import { isTim, type Profile } from "../rooms/profile.ts";
import { forbidden, Refusal } from "./context.ts";
import { CLIENT, route, type Route } from "./router.ts";

export interface TimRuleDeps {
  profile: Profile;
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
    route(["GET", "POST"], `${CLIENT}/publicRooms`, async (ctx) => {
      await ctx.requireRequester();
      if (d.profile === "tim-epa") throw forbidden("Insured persons cannot list public rooms");
      return undefined;
    }),
  ];
}
