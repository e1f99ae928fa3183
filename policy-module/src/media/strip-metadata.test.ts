import { describe, expect, it } from "vitest";
import { stripImageMetadata } from "./strip-metadata.ts";
import { JPEG_WITH_GPS, jpegPixelSegments, pngWithMetadata, webpWithMetadata } from "./test-images.ts";

const has = (buf: Buffer, s: string): boolean => buf.includes(Buffer.from(s, "latin1"));

function stripped(data: Buffer, type: string): { data: Buffer; removed: string[] } {
  const r = stripImageMetadata(data, type);
  if (r.kind !== "stripped") throw new Error(`expected stripped, got ${JSON.stringify(r)}`);
  return r;
}

describe("image metadata stripping", () => {
  it("removes EXIF with GPS, XMP and comments from a JPEG and keeps the pixel data byte for byte", () => {
    expect(has(JPEG_WITH_GPS, "Exif\0\0")).toBe(true);
    expect(has(JPEG_WITH_GPS, "MedMesh test camera")).toBe(true);
    const r = stripped(JPEG_WITH_GPS, "image/jpeg");
    expect(r.removed.sort()).toEqual(["EXIF", "XMP", "comment"]);
    for (const s of ["Exif\0\0", "MedMesh test camera", "ns.adobe.com/xap", "taken at the ward"]) {
      expect(has(r.data, s)).toBe(false);
    }
    expect(jpegPixelSegments(r.data).equals(jpegPixelSegments(JPEG_WITH_GPS))).toBe(true);
    expect(has(r.data, "JFIF\0")).toBe(true); // APP0 stays
    // A clean file comes back unchanged.
    const again = stripped(r.data, "IMAGE/JPEG; charset=binary");
    expect(again.removed).toEqual([]);
    expect(again.data.equals(r.data)).toBe(true);
  });

  it("refuses truncated or foreign bytes claimed to be a JPEG", () => {
    expect(stripImageMetadata(JPEG_WITH_GPS.subarray(0, 300), "image/jpeg").kind).toBe("invalid");
    expect(stripImageMetadata(Buffer.from("GIF89a"), "image/jpeg")).toMatchObject({
      kind: "invalid",
      reason: "no JPEG start-of-image marker",
    });
  });

  it("drops eXIf and text chunks (XMP included) from a PNG, other chunks untouched", () => {
    const r = stripped(pngWithMetadata(), "image/png");
    expect(r.removed.sort()).toEqual(["EXIF", "XMP", "text"]);
    expect(r.data.equals(pngWithMetadata(true))).toBe(true);
    const clean = stripped(pngWithMetadata(true), "image/png");
    expect(clean.removed).toEqual([]);
  });

  it("refuses a PNG with a bad CRC or cut short", () => {
    const bad = Buffer.from(pngWithMetadata(true));
    bad[30] = (bad[30] ?? 0) ^ 0xff;
    expect(stripImageMetadata(bad, "image/png")).toMatchObject({ kind: "invalid" });
    expect(stripImageMetadata(pngWithMetadata().subarray(0, 40), "image/png").kind).toBe("invalid");
  });

  it("drops EXIF and XMP chunks from a WebP, clears their VP8X flags and fixes the RIFF size", () => {
    const r = stripped(webpWithMetadata(), "image/webp");
    expect(r.removed.sort()).toEqual(["EXIF", "XMP"]);
    expect(has(r.data, "GPS-position")).toBe(false);
    expect(r.data.readUInt32LE(4)).toBe(r.data.length - 8);
    expect((r.data[20] ?? 0) & 0x0c).toBe(0);
    expect(has(r.data, "VP8L")).toBe(true);
  });

  it("leaves other types to pass through unchanged", () => {
    expect(stripImageMetadata(Buffer.from("x"), "application/octet-stream").kind).toBe("unsupported");
    expect(stripImageMetadata(Buffer.from("x"), "image/heic").kind).toBe("unsupported");
  });
});
