import { createHash } from "node:crypto";
import type { Knex } from "knex";
import { affected, deleteInBatches, type Db } from "./db.ts";

export interface MediaRow {
  media_id: string;
  vendor: string | null;
  content_type: string;
  /** A vendor's upload, until it is in Matrix. */
  data: Buffer | null;
  mxc: string | null;
  /** The encrypted-attachment object (with its key) when the mxc holds ciphertext. */
  file: unknown;
  size: string | number | null;
  event_id: string | null;
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * Files (`bridge_media`) both ways. A vendor's upload holds its bytes only until they are in
 * Matrix; from then on the row names the Matrix file (mxc, and the key of an encrypted one), as it
 * does for files Matrix users send, which the bridge never holds. A row goes with the message
 * that carries it (a redaction) or at the latest with the retention period.
 */
export function mediaStore(knex: Knex) {
  const parse = (row: MediaRow): MediaRow => ({
    ...row,
    file: typeof row.file === "string" ? (JSON.parse(row.file) as unknown) : row.file,
  });
  return {
    /** A vendor's upload: stored, the same bytes again (a retry), or the ID taken by another file. */
    async putUpload(u: {
      media_id: string;
      vendor: string;
      content_type: string;
      data: Buffer;
    }): Promise<"stored" | "same" | "conflict"> {
      const hash = sha256(u.data);
      const inserted = await knex("bridge_media")
        .insert({ ...u, sha256: hash, size: u.data.length, created_at: new Date() })
        .onConflict("media_id")
        .ignore()
        .returning("media_id");
      if (inserted.length > 0) return "stored";
      const existing = await knex("bridge_media")
        .where({ media_id: u.media_id })
        .first<{ vendor: string | null; sha256: string | null } | undefined>("vendor", "sha256");
      return existing?.vendor === u.vendor && existing.sha256 === hash ? "same" : "conflict";
    },
    async get(mediaId: string, vendor: string): Promise<MediaRow | undefined> {
      const row = await knex("bridge_media")
        .where({ media_id: mediaId, vendor })
        .first<MediaRow | undefined>(
          "media_id",
          "vendor",
          "content_type",
          "data",
          "mxc",
          "file",
          "size",
          "event_id",
        );
      return row && parse(row);
    },
    /** A file a Matrix user sent, named for the vendor (one per event: recording it again adds nothing). */
    async recordMatrixFile(m: {
      media_id: string;
      vendor: string;
      content_type: string;
      mxc: string;
      file: unknown;
      event_id: string;
    }): Promise<void> {
      await knex("bridge_media")
        .insert({ ...m, file: m.file ? JSON.stringify(m.file) : null, created_at: new Date() })
        .onConflict("media_id")
        .ignore();
    },
    /** The upload is in Matrix: the bytes go, the Matrix file is what the row names from now on. */
    async uploaded(mediaId: string, to: { mxc: string; file: unknown }): Promise<void> {
      await knex("bridge_media")
        .where({ media_id: mediaId })
        .update({ mxc: to.mxc, file: to.file ? JSON.stringify(to.file) : null, data: null });
    },
    /** The Matrix event that carries the file (so its redaction takes the row along). */
    async carriedBy(db: Db, mediaId: string, eventId: string): Promise<void> {
      await db("bridge_media").where({ media_id: mediaId }).update({ event_id: eventId });
    },
    forgetEvent: async (eventId: string): Promise<number> =>
      affected(await knex("bridge_media").where({ event_id: eventId }).delete()),
    /** Rows older than `before`: the messages that used them have expired. */
    prune: (before: Date, batch: number): Promise<number> =>
      deleteInBatches(knex, "bridge_media", (q) => q.where("created_at", "<", before), batch),
  };
}
export type MediaStore = ReturnType<typeof mediaStore>;
