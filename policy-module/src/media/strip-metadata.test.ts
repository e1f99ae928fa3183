import { describe, expect, it } from "vitest";
import { stripImageMetadata, type StripResult } from "./strip-metadata.ts";
import {
  CAMERA_MAKE,
  COMMENT,
  GPS_INFO_ENTRY,
  GPS_LATITUDE,
  IPTC_CITY,
  JPEG_WITH_GPS,
  PNG_XMP_KEYWORD,
  XMP_EXTENSION_NAMESPACE,
  XMP_NAMESPACE,
  cleanJpeg,
  cleanPng,
  cleanWebp,
  exifWithGps,
  jpegScanData,
  jpegSegment,
  jpegWithGps,
  pngChunk,
  pngWithMetadata,
  progressiveJpeg,
  riffChunk,
  simpleWebp,
  webpFile,
  webpWithMetadata,
  withJpegSegments,
} from "./test-images.ts";

const contains = (haystack: Buffer, needle: Buffer | string): boolean =>
  haystack.includes(typeof needle === "string" ? Buffer.from(needle, "latin1") : needle);

/** What no stripped file may contain any more: the EXIF/GPS bytes, XMP, IPTC and comment text. */
const METADATA_TRACES: (Buffer | string)[] = [
  "Exif\0",
  GPS_INFO_ENTRY,
  GPS_LATITUDE,
  CAMERA_MAKE,
  XMP_NAMESPACE,
  XMP_EXTENSION_NAMESPACE,
  "GPSLatitude",
  "Photoshop 3.0",
  IPTC_CITY,
  COMMENT,
];

function stripped(data: Buffer, contentType: string): { data: Buffer; removed: string[] } {
  const result = stripImageMetadata(data, contentType);
  if (result.kind !== "stripped") throw new Error(`expected "stripped", got ${JSON.stringify(result)}`);
  return result;
}

/** Every proper prefix of the file (cut anywhere) must be refused. */
function expectEveryTruncationInvalid(data: Buffer, contentType: string): void {
  const accepted: number[] = [];
  for (let n = 0; n < data.length; n++) {
    if (stripImageMetadata(data.subarray(0, n), contentType).kind !== "invalid") accepted.push(n);
  }
  expect(accepted).toEqual([]);
}

function invalidReason(data: Buffer, contentType: string): string {
  const result: StripResult = stripImageMetadata(data, contentType);
  if (result.kind !== "invalid") throw new Error(`expected "invalid", got ${result.kind}`);
  return result.reason;
}

describe("JPEG", () => {
  it("removes EXIF with its GPS position, XMP, IPTC and the comment", () => {
    const original = jpegWithGps();
    for (const trace of METADATA_TRACES) expect(contains(original, trace), String(trace)).toBe(true);

    const result = stripped(original, "image/jpeg");

    expect(result.removed).toEqual(["EXIF", "XMP", "IPTC", "comment"]);
    for (const trace of METADATA_TRACES) expect(contains(result.data, trace), String(trace)).toBe(false);
  });

  it("keeps every other byte: the result is exactly the image without the inserted segments", () => {
    const result = stripped(jpegWithGps(), "image/jpeg");
    expect(result.data.equals(cleanJpeg())).toBe(true);
    // Same quantisation and Huffman tables, frame header, restart interval and entropy-coded data.
    expect(jpegScanData(result.data).equals(jpegScanData(jpegWithGps()))).toBe(true);
    expect(contains(result.data, "JFIF\0")).toBe(true);
  });

  it("returns a clean file byte for byte with nothing removed", () => {
    for (const clean of [cleanJpeg(), progressiveJpeg()]) {
      const result = stripped(clean, "image/jpeg");
      expect(result.removed).toEqual([]);
      expect(result.data.equals(clean)).toBe(true);
    }
  });

  it("keeps the colour-related segments: ICC profile (APP2), Adobe (APP14) and other APP1 data", () => {
    const kept = [
      jpegSegment(0xe2, Buffer.from("ICC_PROFILE\0\x01\x01not a real profile", "latin1")),
      jpegSegment(0xee, Buffer.from("Adobe\0\x64\0\0\0\0\x01", "latin1")),
      jpegSegment(0xe1, Buffer.from("some other APP1 payload", "latin1")),
    ];
    const input = withJpegSegments(cleanJpeg(), [kept[0]!, ...jpegSomeMetadata(), kept[1]!, kept[2]!]);
    const result = stripped(input, "image/jpeg");
    expect(result.removed).toEqual(["EXIF", "comment"]);
    expect(result.data.equals(withJpegSegments(cleanJpeg(), kept))).toBe(true);
  });

  it("walks past 0xFF fill bytes, dropping them with a dropped segment and keeping them with a kept one", () => {
    const fill = Buffer.from([0xff, 0xff, 0xff]);
    const [exif, comment] = jpegSomeMetadata();
    const icc = jpegSegment(0xe2, Buffer.from("ICC_PROFILE\0\x01\x01", "latin1"));
    const input = withJpegSegments(cleanJpeg(), [fill, exif!, fill, icc, fill, comment!]);
    const result = stripped(input, "image/jpeg");
    expect(result.removed).toEqual(["EXIF", "comment"]);
    expect(result.data.equals(withJpegSegments(cleanJpeg(), [fill, icc]))).toBe(true);
  });

  it("passes a standalone TEM marker (no length field) through", () => {
    const tem = Buffer.from([0xff, 0x01]);
    const result = stripped(withJpegSegments(cleanJpeg(), [tem, ...jpegSomeMetadata()]), "image/jpeg");
    expect(result.data.equals(withJpegSegments(cleanJpeg(), [tem]))).toBe(true);
  });

  it("walks restart markers and stuffed bytes in the scan up to EOI", () => {
    const scan = cleanJpeg().subarray(cleanJpeg().indexOf(Buffer.from([0xff, 0xda])));
    expect(contains(scan, Buffer.from([0xff, 0xd0]))).toBe(true); // RST0
    expect(contains(scan, Buffer.from([0xff, 0x00]))).toBe(true); // a stuffed 0xFF data byte
    expect(stripped(jpegWithGps(), "image/jpeg").data.subarray(-scan.length).equals(scan)).toBe(true);
  });

  it("strips a progressive JPEG, including metadata placed between its scans", () => {
    const progressive = progressiveJpeg();
    // The DHT segment that follows the first scan.
    const between = progressive.indexOf(
      Buffer.from([0xff, 0xc4]),
      progressive.indexOf(Buffer.from([0xff, 0xda])),
    );
    const [exif, comment] = jpegSomeMetadata();
    const input = Buffer.concat([
      withJpegSegments(progressive.subarray(0, between), [exif!]),
      comment!,
      progressive.subarray(between),
    ]);
    const result = stripped(input, "image/jpeg");
    expect(result.removed).toEqual(["EXIF", "comment"]);
    expect(result.data.equals(progressive)).toBe(true);
  });

  it("copies bytes after EOI unchanged", () => {
    const trailer = Buffer.from("trailing bytes");
    const result = stripped(Buffer.concat([jpegWithGps(), trailer]), "image/jpeg");
    expect(result.data.equals(Buffer.concat([cleanJpeg(), trailer]))).toBe(true);
  });

  it("refuses a JPEG cut short anywhere", () => {
    expectEveryTruncationInvalid(jpegWithGps(), "image/jpeg");
    expect(invalidReason(cleanJpeg().subarray(0, -2), "image/jpeg")).toBe(
      "the scan data ends without an end-of-image marker",
    );
  });

  it("refuses bytes that are not a well-formed JPEG", () => {
    const clean = cleanJpeg();
    const app0End = 4 + clean.readUInt16BE(4);
    const at = (bytes: number[]): Buffer =>
      Buffer.concat([clean.subarray(0, app0End), Buffer.from(bytes), clean.subarray(app0End)]);
    const sof = clean.indexOf(Buffer.from([0xff, 0xc0]));
    const withoutFrame = Buffer.concat([
      clean.subarray(0, sof),
      clean.subarray(sof + 2 + clean.readUInt16BE(sof + 2)),
    ]);

    expect(invalidReason(cleanPng(), "image/jpeg")).toBe("no JPEG start-of-image marker");
    expect(invalidReason(Buffer.from([0xff, 0xd8, 0xff, 0xd9]), "image/jpeg")).toBe(
      "the image ends before its scan data",
    );
    expect(invalidReason(at([0x12, 0x34]), "image/jpeg")).toBe(`expected a marker at byte ${app0End}`);
    expect(invalidReason(at([0xff, 0x00]), "image/jpeg")).toMatch(/reserved marker 0xFF00/);
    expect(invalidReason(at([0xff, 0xd8]), "image/jpeg")).toBe("a second start-of-image marker");
    expect(invalidReason(at([0xff, 0xfe, 0x00, 0x01]), "image/jpeg")).toMatch(/segment length of 1/);
    expect(invalidReason(at([0xff, 0xfe, 0xff, 0xff]), "image/jpeg")).toBe(
      "a segment runs past the end of the file",
    );
    expect(invalidReason(withoutFrame, "image/jpeg")).toBe("scan data before the frame header");
  });
});

/** An EXIF APP1 segment and a COM segment, for tests that place metadata themselves. */
function jpegSomeMetadata(): Buffer[] {
  return [
    jpegSegment(0xe1, Buffer.concat([Buffer.from("Exif\0\0", "latin1"), exifWithGps()])),
    jpegSegment(0xfe, Buffer.from(COMMENT, "latin1")),
  ];
}

describe("PNG", () => {
  it("drops eXIf, the XMP iTXt, zTXt, tIME and tEXt and leaves the rest exactly as it was", () => {
    const original = pngWithMetadata();
    for (const trace of [
      "eXIf",
      GPS_LATITUDE,
      GPS_INFO_ENTRY,
      PNG_XMP_KEYWORD,
      "GPSLatitude",
      "tIME",
      COMMENT,
    ]) {
      expect(contains(original, trace), String(trace)).toBe(true);
    }

    const result = stripped(original, "image/png");

    expect(result.removed).toEqual(["EXIF", "XMP", "text", "time"]);
    for (const trace of [
      "eXIf",
      GPS_LATITUDE,
      GPS_INFO_ENTRY,
      PNG_XMP_KEYWORD,
      "GPSLatitude",
      "tIME",
      COMMENT,
    ]) {
      expect(contains(result.data, trace), String(trace)).toBe(false);
    }
    expect(result.data.equals(cleanPng())).toBe(true); // IHDR, sRGB, IDAT, IEND untouched
  });

  it("returns a clean file byte for byte with nothing removed", () => {
    const result = stripped(cleanPng(), "image/png");
    expect(result.removed).toEqual([]);
    expect(result.data.equals(cleanPng())).toBe(true);
  });

  it("calls a text chunk that is not XMP just text", () => {
    const png = cleanPng();
    const withText = Buffer.concat([
      png.subarray(0, 33),
      pngChunk("iTXt", Buffer.from("Title\0\0\0\0\0x")),
      png.subarray(33),
    ]);
    expect(stripImageMetadata(withText, "image/png")).toEqual({
      kind: "stripped",
      data: png,
      removed: ["text"],
    });
  });

  it("refuses a bad CRC, also in a chunk that would have been dropped", () => {
    const badIdat = cleanPng();
    const lastIdatByte = badIdat.length - 12 - 4 - 1; // before IEND and IDAT's CRC
    badIdat[lastIdatByte] = (badIdat[lastIdatByte] ?? 0) ^ 0x01;
    expect(invalidReason(badIdat, "image/png")).toMatch(/^bad CRC in the IDAT chunk/);

    const badText = pngWithMetadata();
    const text = badText.indexOf("tEXt");
    badText[text + 5] = (badText[text + 5] ?? 0) ^ 0x20;
    expect(invalidReason(badText, "image/png")).toMatch(/^bad CRC in the tEXt chunk/);
  });

  it("refuses a PNG cut short anywhere", () => {
    expectEveryTruncationInvalid(pngWithMetadata(), "image/png");
  });

  it("refuses bytes that are not a well-formed PNG", () => {
    const png = cleanPng();
    const iend = png.subarray(-12);
    const sig = png.subarray(0, 8);
    const ihdr = png.subarray(8, 33);
    expect(invalidReason(cleanJpeg(), "image/png")).toBe("no PNG signature");
    expect(invalidReason(Buffer.concat([png, Buffer.from("x")]), "image/png")).toBe(
      "data after the IEND chunk",
    );
    expect(invalidReason(Buffer.concat([sig, ihdr, iend]), "image/png")).toBe("no IDAT chunk");
    expect(invalidReason(Buffer.concat([sig, iend]), "image/png")).toBe("the first chunk is not IHDR");
    expect(invalidReason(png.subarray(0, -12), "image/png")).toBe("the file ends before the IEND chunk");
    expect(invalidReason(Buffer.concat([sig, pngChunk("IH1R", Buffer.alloc(13))]), "image/png")).toMatch(
      /malformed chunk type/,
    );
  });
});

describe("WebP", () => {
  it("drops the EXIF and XMP chunks, clears their VP8X flags and fixes the RIFF size", () => {
    const original = webpWithMetadata();
    for (const trace of [GPS_LATITUDE, GPS_INFO_ENTRY, "GPSLatitude", "XMP "]) {
      expect(contains(original, trace), String(trace)).toBe(true);
    }
    expect(original[20]).toBe(0x10 | 0x08 | 0x04);

    const result = stripped(original, "image/webp");

    expect(result.removed).toEqual(["EXIF", "XMP"]);
    for (const trace of [GPS_LATITUDE, GPS_INFO_ENTRY, "GPSLatitude", "XMP ", "EXIF"]) {
      expect(contains(result.data, trace), String(trace)).toBe(false);
    }
    expect(result.data[20]).toBe(0x10); // the alpha flag stays
    expect(result.data.readUInt32LE(4)).toBe(result.data.length - 8);
    expect(result.data.equals(cleanWebp())).toBe(true); // the padded VP8L chunk untouched
  });

  it("returns clean files byte for byte with nothing removed", () => {
    for (const clean of [cleanWebp(), simpleWebp()]) {
      const result = stripped(clean, "image/webp");
      expect(result.removed).toEqual([]);
      expect(result.data.equals(clean)).toBe(true);
    }
  });

  it("refuses a WebP cut short anywhere or with a broken container", () => {
    expectEveryTruncationInvalid(webpWithMetadata(), "image/webp");
    const vp8l = cleanWebp().subarray(30);
    expect(invalidReason(cleanPng(), "image/webp")).toBe("no RIFF/WEBP header");
    expect(invalidReason(Buffer.concat([cleanWebp(), Buffer.alloc(2)]), "image/webp")).toBe(
      "data after the RIFF container",
    );
    expect(invalidReason(webpFile([riffChunk("EXIF", exifWithGps()), vp8l]), "image/webp")).toBe(
      "the first chunk is not VP8, VP8L or VP8X",
    );
    expect(invalidReason(webpFile([riffChunk("VP8X", Buffer.alloc(4)), vp8l]), "image/webp")).toBe(
      "the VP8X chunk is too short",
    );
    const unpadded = webpFile([riffChunk("VP8L", Buffer.alloc(17))]).subarray(0, -1);
    unpadded.writeUInt32LE(unpadded.length - 8, 4); // RIFF size consistent, the padding byte missing
    expect(invalidReason(unpadded, "image/webp")).toMatch(/runs past the RIFF end/);
  });
});

describe("content types", () => {
  it("accepts parameters, any case and the common aliases", () => {
    const expected = stripped(jpegWithGps(), "image/jpeg");
    for (const type of ["IMAGE/JPEG", " image/jpeg ; charset=binary", "image/jpg", "Image/PJPEG"]) {
      expect(stripImageMetadata(jpegWithGps(), type)).toEqual({ kind: "stripped", ...expected });
    }
    expect(stripped(pngWithMetadata(), "Image/PNG;x=1").data.equals(cleanPng())).toBe(true);
    expect(stripped(webpWithMetadata(), "IMAGE/WEBP").data.equals(cleanWebp())).toBe(true);
  });

  it("leaves types it does not handle to the caller, whatever the bytes", () => {
    for (const type of [
      "application/octet-stream",
      "image/heic",
      "image/heif",
      "image/avif",
      "image/gif",
      "",
      "jpeg",
    ]) {
      expect(stripImageMetadata(JPEG_WITH_GPS, type)).toEqual({ kind: "unsupported" });
    }
  });

  it("judges the bytes by the claimed type, not by sniffing", () => {
    expect(stripImageMetadata(cleanPng(), "image/jpeg").kind).toBe("invalid");
    expect(stripImageMetadata(JPEG_WITH_GPS, "image/webp").kind).toBe("invalid");
  });
});
