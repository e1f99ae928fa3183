import { z } from "zod";
import { loadConfigFile } from "../config/load.ts";

const NamespaceSchema = z.object({ exclusive: z.boolean(), regex: z.string() });

/** The appservice registration format from the Matrix appservice spec (the subset MedMesh uses). */
export const RegistrationSchema = z.object({
  id: z.string().min(1),
  url: z.string().nullable(),
  as_token: z.string().min(16, "must be a long random token"),
  hs_token: z.string().min(16, "must be a long random token"),
  sender_localpart: z.string().min(1),
  rate_limited: z.boolean().optional(),
  namespaces: z.object({
    users: z.array(NamespaceSchema).default([]),
    rooms: z.array(NamespaceSchema).default([]),
    aliases: z.array(NamespaceSchema).default([]),
  }),
});
export type Registration = z.output<typeof RegistrationSchema>;

export function loadRegistration(file: string): Registration {
  return loadConfigFile(RegistrationSchema, file);
}
