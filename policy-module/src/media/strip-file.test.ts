import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { stripImageFile } from "./strip-file.ts";
import { stripImageMetadata } from "./strip-metadata.ts";
import {
  cleanJpeg,
  cleanPng,
  jpegMetadataSegments,
  jpegWithGps,
  pngChunk,
  pngWithMetadata,
  progressiveJpeg,
  webpWithMetadata,
  withJpegSegments,
} from "./test-images.ts";

// The file path walks the same structure as the in-memory one (strip-metadata.test.ts covers the
// formats); here: it gives the same answers, across block boundaries, for files larger than a block.

const dir = mkdtempSync(join(tmpdir(), "medmesh-strip-file-test-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
let files = 0;

async function viaFile(data: Buffer, type: string): Promise<unknown> {
  const path = join(dir, `image-${String(files++)}`);
  writeFileSync(path, data);
  const result = await stripImageFile(path, data.length, type);
  if (result.kind !== "stripped") return result;
  const out = await collect(result.open());
  expect(out.length).toBe(result.length); // the Content-Length sent before the bytes
  return { kind: "stripped", data: out, removed: result.removed };
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Entropy-coded bytes as an encoder writes them: every 0xFF followed by a stuffed 0x00. */
function stuffedScanBytes(length: number): Buffer {
  const bytes = randomBytes(length);
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0xff) bytes[i + 1] = 0x00;
  if (bytes[bytes.length - 1] === 0xff) bytes[bytes.length - 1] = 0x12;
  return bytes;
}

/** A JPEG whose scan is `extra` bytes longer (inserted right after the SOS header). */
function largeJpeg(extra: number): Buffer {
  const clean = cleanJpeg();
  const sos = clean.indexOf(Buffer.from([0xff, 0xda]));
  const scanStart = sos + 2 + clean.readUInt16BE(sos + 2);
  return Buffer.concat([clean.subarray(0, scanStart), stuffedScanBytes(extra), clean.subarray(scanStart)]);
}

/** A PNG with a large IDAT (several blocks long) added before its own, and its metadata. */
function largePng(extra: number): Buffer {
  const png = pngWithMetadata();
  const idat = png.indexOf("IDAT") - 4;
  return Buffer.concat([png.subarray(0, idat), pngChunk("IDAT", randomBytes(extra)), png.subarray(idat)]);
}

describe("stripping from a file", () => {
  it("gives exactly the in-memory answer for every sample image", async () => {
    for (const [data, type] of [
      [jpegWithGps(), "image/jpeg"],
      [cleanJpeg(), "image/jpeg"],
      [progressiveJpeg(), "image/jpeg"],
      [pngWithMetadata(), "image/png"],
      [cleanPng(), "image/png"],
      [webpWithMetadata(), "image/webp"],
      [cleanPng(), "image/jpeg"],
      [Buffer.alloc(0), "image/png"],
      [jpegWithGps(), "image/heic"],
    ] as const) {
      expect(await viaFile(data, type), type).toEqual(stripImageMetadata(data, type));
    }
  });

  it("refuses truncated files with the same reasons", async () => {
    for (const [data, type] of [
      [jpegWithGps(), "image/jpeg"],
      [pngWithMetadata(), "image/png"],
      [webpWithMetadata(), "image/webp"],
    ] as const) {
      for (let n = 0; n < data.length; n += 7) {
        const cut = data.subarray(0, n);
        expect(await viaFile(cut, type), `${type} cut at ${String(n)}`).toEqual(
          stripImageMetadata(cut, type),
        );
      }
    }
  });

  it("walks files many blocks long: a JPEG's scan and a PNG's IDAT across block boundaries", async () => {
    const jpeg = withJpegSegments(largeJpeg(3 * 1024 * 1024 + 17), jpegMetadataSegments());
    const png = largePng(2 * 1024 * 1024 + 5);
    for (const [data, type] of [
      [jpeg, "image/jpeg"],
      [png, "image/png"],
    ] as const) {
      const expected = stripImageMetadata(data, type);
      expect(expected.kind).toBe("stripped");
      expect(await viaFile(data, type)).toEqual(expected);
    }
    // A bad CRC at the very end of the large IDAT is still found.
    const corrupt = Buffer.from(png);
    const idatEnd = 33 + 12 + 2 * 1024 * 1024 + 5 - 5;
    corrupt[idatEnd] = (corrupt[idatEnd] ?? 0) ^ 1;
    expect(await viaFile(corrupt, "image/png")).toEqual(stripImageMetadata(corrupt, "image/png"));
    expect(stripImageMetadata(corrupt, "image/png").kind).toBe("invalid");
  });
});
