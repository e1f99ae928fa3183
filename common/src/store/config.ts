import { z } from "zod";

export const StoreConfigSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("pglite").describe("Embedded PostgreSQL (PGlite); the default."),
    data_dir: z
      .string()
      .min(1)
      .describe('Folder of the embedded database; "memory://" keeps it in memory (tests).'),
  }),
  z.object({
    type: z.literal("postgres").describe("A PostgreSQL server (production)."),
    url: z.string().min(1).describe("postgres:// connection URL."),
    password: z.string().optional().describe("Password, if not in the URL; use ${file:…} or ${env:…}."),
    pool_max: z.number().int().min(1).default(10).describe("Maximum connections in the pool."),
  }),
]);
export type StoreConfig = z.output<typeof StoreConfigSchema>;
