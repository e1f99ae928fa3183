/**
 * Removes EXIF (with its GPS position), XMP, IPTC, comments and text chunks from uploaded images
 * without re-encoding them. Each supported container is walked structurally; metadata segments are
 * dropped and every other byte is copied unchanged, so the pixels a recipient decodes are exactly
 * the ones that were uploaded, and a file without metadata comes back byte for byte.
 *
 * HEIC/HEIF and AVIF are deliberately "unsupported" (the caller passes them on unchanged): their
 * EXIF and XMP are ISOBMFF items whose bytes sit in `mdat` and are found through the `iloc` box, so
 * dropping them means rewriting `iinf`/`iloc`/`iref` and shifting the offsets of every other item.
 * That is not done yet.
 *
 * Each walker is a generator that asks for the bytes it needs (`ReadRequest`) and returns a `Plan`
 * (the ranges kept, and the few bytes rewritten). The same walk runs over a Buffer here and, for
 * large uploads, over a temporary file (strip-file.ts), so a file is never held whole in memory.
 */

import { BLOCK, InvalidImage, Rewriter, byteAt, read, type Plan, type Walk } from "./walk.ts";

export type StripResult =
  /** `removed` names what was found and dropped, each once: EXIF, XMP, IPTC, comment, text, time. */
  | { kind: "stripped"; data: Buffer; removed: string[] }
  /** Not a type this module handles: the caller passes the bytes on unchanged. */
  | { kind: "unsupported" }
  /** The content type claims an image type but the bytes are not a well-formed file of that type. */
  | { kind: "invalid"; reason: string };

export type Walker = (size: number) => Walk<Plan>;

const WALKERS: ReadonlyMap<string, Walker> = new Map([
  ["image/jpeg", stripJpeg],
  ["image/jpg", stripJpeg],
  ["image/pjpeg", stripJpeg],
  ["image/png", stripPng],
  ["image/apng", stripPng],
  ["image/webp", stripWebp],
]);

/** The walker for a content type, or undefined when this module does not handle the type. */
export function walkerFor(contentType: string): Walker | undefined {
  return WALKERS.get(mediaType(contentType));
}

export function stripImageMetadata(data: Buffer, contentType: string): StripResult {
  const walker = walkerFor(contentType);
  if (walker === undefined) return { kind: "unsupported" };
  try {
    const plan = runOnBuffer(walker(data.length), data);
    const parts = plan.parts.map((p) => (Buffer.isBuffer(p) ? p : data.subarray(p.start, p.end)));
    return { kind: "stripped", data: Buffer.concat(parts, plan.length), removed: plan.removed };
  } catch (err) {
    if (err instanceof InvalidImage) return { kind: "invalid", reason: err.message };
    throw err;
  }
}

function runOnBuffer<T>(walk: Walk<T>, data: Buffer): T {
  let step = walk.next();
  while (!step.done) step = walk.next(data.subarray(step.value.pos, step.value.pos + step.value.length));
  return step.value;
}

/** "Image/JPEG; charset=binary" -> "image/jpeg": clients add parameters and vary the case. */
function mediaType(contentType: string): string {
  return (contentType.split(";")[0] ?? "").trim().toLowerCase();
}

const startsWith = (bytes: Buffer, prefix: string): boolean =>
  bytes.subarray(0, prefix.length).equals(Buffer.from(prefix, "latin1"));

/** Enough of a segment's or chunk's payload to tell what kind of metadata it is. */
const SIGNATURE_BYTES = 64;

// ---------------------------------------------------------------------------------------------
// JPEG (ITU T.81 annex B): SOI, then marker segments (0xFF, code, 16-bit length that counts
// itself), then scans of entropy-coded data, then EOI.

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const TEM = 0x01;
const APP1 = 0xe1;
const APP13 = 0xed;
const COM = 0xfe;

const isRestart = (code: number): boolean => code >= 0xd0 && code <= 0xd7;
/** SOF0..SOF15 (C4 DHT, C8 JPG and CC DAC share the range but are not frame headers), F7 JPEG-LS. */
const isFrameHeader = (code: number): boolean =>
  (code >= 0xc0 && code <= 0xcf && code !== 0xc4 && code !== 0xc8 && code !== 0xcc) || code === 0xf7;

function* stripJpeg(size: number): Walk<Plan> {
  const start = yield* read(0, 2);
  if (start.length < 2 || start[0] !== 0xff || start[1] !== SOI) {
    throw new InvalidImage("no JPEG start-of-image marker");
  }
  const out = new Rewriter();
  out.keep(0, 2);
  let pos = 2;
  let frameSeen = false;
  let inScan = false;
  for (;;) {
    if (inScan) {
      const marker = yield* nextMarkerAfterScan(size, pos);
      out.keep(pos, marker);
      pos = marker;
    }
    const { code, next } = yield* readJpegMarker(size, pos);
    if (code === EOI) {
      if (!inScan) throw new InvalidImage("the image ends before its scan data");
      // Whatever trails EOI is not part of this image's structure and is copied as it is.
      out.keep(pos, size);
      return out.plan();
    }
    if (code === TEM || isRestart(code)) {
      out.keep(pos, next); // standalone markers carry no length
      pos = next;
      continue;
    }
    if (code === SOI) throw new InvalidImage("a second start-of-image marker");
    if (code < 0xc0) throw new InvalidImage(`reserved marker 0xFF${hex(code)} at byte ${pos}`);
    const end = yield* jpegSegmentEnd(size, next);
    if (isFrameHeader(code)) frameSeen = true;
    if (code === SOS) {
      if (!frameSeen) throw new InvalidImage("scan data before the frame header");
      inScan = true;
    }
    const payload = yield* read(next + 2, Math.min(end - next - 2, SIGNATURE_BYTES));
    const kind = jpegMetadataKind(code, payload);
    if (kind === undefined) out.keep(pos, end);
    else out.drop(kind); // its fill bytes go with it
    pos = end;
  }
}

/** Reads the marker at `pos`, skipping the 0xFF fill bytes that may precede any marker (B.1.1.2). */
function* readJpegMarker(size: number, pos: number): Walk<{ code: number; next: number }> {
  if (pos >= size) throw new InvalidImage("the file ends before its end-of-image marker");
  if ((yield* byteAt(pos)) !== 0xff) throw new InvalidImage(`expected a marker at byte ${pos}`);
  let i = pos + 1;
  let code = yield* byteAt(i);
  while (code === 0xff) code = yield* byteAt(++i);
  if (code === undefined) throw new InvalidImage("the file ends inside a marker");
  return { code, next: i + 1 };
}

/** The end of a segment whose 16-bit length (which counts itself) starts at `lengthPos`. */
function* jpegSegmentEnd(size: number, lengthPos: number): Walk<number> {
  const field = yield* read(lengthPos, 2);
  if (field.length < 2) throw new InvalidImage("the file ends inside a segment header");
  const length = field.readUInt16BE(0);
  if (length < 2) throw new InvalidImage(`a segment length of ${length} at byte ${lengthPos}`);
  const end = lengthPos + length;
  if (end > size) throw new InvalidImage("a segment runs past the end of the file");
  return end;
}

/**
 * Skips entropy-coded data: there a 0xFF is always followed by a stuffed 0x00 or is a restart
 * marker, so the first other marker (DHT between progressive scans, the next SOS, EOI...) ends it.
 * Returns the position of that marker's first 0xFF. Reads block by block.
 */
function* nextMarkerAfterScan(size: number, pos: number): Walk<number> {
  let blockPos = pos;
  let from = pos; // where to look for the next 0xFF
  while (from < size) {
    const block = yield* read(blockPos, BLOCK);
    if (block.length === 0) break;
    const k = block.indexOf(0xff, from - blockPos);
    if (k === -1) {
      blockPos += block.length;
      from = blockPos;
      continue;
    }
    const ff = blockPos + k;
    let i = ff + 1;
    let code = yield* byteAt(i);
    while (code === 0xff) code = yield* byteAt(++i);
    if (code === undefined) break;
    if (code !== 0x00 && !isRestart(code)) return ff;
    from = i + 1;
    if (from >= blockPos + block.length) blockPos = from;
  }
  throw new InvalidImage("the scan data ends without an end-of-image marker");
}

function jpegMetadataKind(code: number, payload: Buffer): string | undefined {
  if (code === APP1 && startsWith(payload, "Exif\0")) return "EXIF"; // TIFF IFDs, GPS, thumbnail
  if (code === APP1 && startsWith(payload, "http://ns.adobe.com/xap/1.0/\0")) return "XMP";
  if (code === APP1 && startsWith(payload, "http://ns.adobe.com/xmp/extension/\0")) return "XMP";
  if (code === APP13) return "IPTC"; // Photoshop image resources, where IPTC-NAA lives
  if (code === COM) return "comment";
  // Everything else stays: JFIF (APP0), ICC_PROFILE (APP2) and Adobe (APP14) decide the colours,
  // the tables and the frame header decide the pixels.
  return undefined;
}

const hex = (byte: number): string => byte.toString(16).toUpperCase().padStart(2, "0");

// ---------------------------------------------------------------------------------------------
// PNG: signature, then chunks (32-bit length, 4-letter type, data, CRC-32 of type and data),
// IHDR first and IEND last. Ancillary chunks are independent, so dropping one moves nothing else.

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PNG_CHUNK_TYPE = /^[A-Za-z]{4}$/;

function* stripPng(size: number): Walk<Plan> {
  if (!(yield* read(0, 8)).equals(PNG_SIGNATURE)) throw new InvalidImage("no PNG signature");
  const out = new Rewriter();
  out.keep(0, 8);
  let pos = 8;
  let idatSeen = false;
  for (;;) {
    const { type, signature, end } = yield* readPngChunk(size, pos);
    if (pos === 8 && type !== "IHDR") throw new InvalidImage("the first chunk is not IHDR");
    if (type === "IDAT") idatSeen = true;
    const kind = pngMetadataKind(type, signature);
    if (kind === undefined) out.keep(pos, end);
    else out.drop(kind);
    pos = end;
    if (type === "IEND") break;
  }
  if (!idatSeen) throw new InvalidImage("no IDAT chunk");
  // Bytes after IEND are no part of the image; refusing them keeps anything from hiding there.
  if (pos !== size) throw new InvalidImage("data after the IEND chunk");
  return out.plan();
}

/** A chunk's type, the start of its data, and its end; its CRC checked over all of it. */
function* readPngChunk(size: number, pos: number): Walk<{ type: string; signature: Buffer; end: number }> {
  if (pos + 12 > size) throw new InvalidImage("the file ends before the IEND chunk");
  const header = yield* read(pos, 8);
  const length = header.readUInt32BE(0);
  if (length > 0x7fffffff) throw new InvalidImage(`a chunk length of ${length} at byte ${pos}`);
  const type = header.toString("latin1", 4, 8);
  if (!PNG_CHUNK_TYPE.test(type)) throw new InvalidImage(`a malformed chunk type at byte ${pos}`);
  const end = pos + 12 + length;
  if (end > size) throw new InvalidImage(`the ${type} chunk runs past the end of the file`);
  // Copied: a reader may reuse the buffer it handed over once the walk asks for more.
  const signature = Buffer.from(yield* read(pos + 8, Math.min(length, SIGNATURE_BYTES)));
  let crc = crc32Update(CRC_INITIAL, header.subarray(4, 8));
  for (let at = pos + 8; at < end - 4;) {
    const block = yield* read(at, Math.min(BLOCK, end - 4 - at));
    crc = crc32Update(crc, block);
    at += block.length;
  }
  if (crcFinal(crc) !== (yield* read(end - 4, 4)).readUInt32BE(0)) {
    throw new InvalidImage(`bad CRC in the ${type} chunk at byte ${pos}`);
  }
  return { type, signature, end };
}

function pngMetadataKind(type: string, body: Buffer): string | undefined {
  switch (type) {
    case "eXIf":
      return "EXIF";
    case "iTXt":
      return startsWith(body, "XML:com.adobe.xmp\0") ? "XMP" : "text";
    case "tEXt":
    case "zTXt":
      return "text";
    case "tIME":
      return "time";
    default:
      return undefined;
  }
}

// The PNG CRC (ISO 3309 / ITU-T V.42, reflected polynomial 0xEDB88320), one table lookup per byte,
// computed over a chunk in blocks.
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const CRC_INITIAL = 0xffffffff;

function crc32Update(crc: number, bytes: Buffer): number {
  let c = crc;
  // An indexed loop: several times faster than for-of on multi-megabyte IDAT data.
  for (let i = 0; i < bytes.length; i++) c = (CRC_TABLE[(c ^ (bytes[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return c;
}

const crcFinal = (crc: number): number => (crc ^ 0xffffffff) >>> 0;

// ---------------------------------------------------------------------------------------------
// WebP: a RIFF container ("RIFF", 32-bit LE size of what follows, "WEBP", chunks). Each chunk is a
// 4-byte type, 32-bit LE size and data padded to an even length. The extended format starts with
// VP8X, whose flags announce the EXIF and XMP chunks.

const WEBP_FIRST_CHUNKS = new Set(["VP8 ", "VP8L", "VP8X"]);
const WEBP_METADATA: ReadonlyMap<string, string> = new Map([
  ["EXIF", "EXIF"],
  ["XMP ", "XMP"],
]);
const VP8X_EXIF_FLAG = 0x08;
const VP8X_XMP_FLAG = 0x04;
/** The chunk header and the VP8X fields up to and including the flags byte's neighbours. */
const VP8X_HEAD = 18;

function* stripWebp(size: number): Walk<Plan> {
  // A copy: its size field is rewritten below.
  const header = Buffer.from(yield* read(0, 12));
  if (header.length < 12 || !startsWith(header, "RIFF") || header.toString("latin1", 8, 12) !== "WEBP") {
    throw new InvalidImage("no RIFF/WEBP header");
  }
  const riffEnd = 8 + header.readUInt32LE(4);
  if (riffEnd > size) throw new InvalidImage("the file is shorter than its RIFF size");
  if (riffEnd < size) throw new InvalidImage("data after the RIFF container");
  if (riffEnd < 20) throw new InvalidImage("no image chunk");
  const out = new Rewriter();
  out.write(header);
  for (let pos = 12; pos < riffEnd;) {
    const { type, end } = yield* readRiffChunk(pos, riffEnd);
    if (pos === 12 && !WEBP_FIRST_CHUNKS.has(type)) {
      throw new InvalidImage("the first chunk is not VP8, VP8L or VP8X");
    }
    const kind = WEBP_METADATA.get(type);
    if (kind !== undefined) out.drop(kind);
    else if (type === "VP8X") {
      const head = yield* withoutMetadataFlags(pos);
      if (head === undefined) out.keep(pos, end);
      else {
        out.write(head);
        out.keep(pos + head.length, end);
      }
    } else out.keep(pos, end);
    pos = end;
  }
  header.writeUInt32LE(out.length - 8, 4);
  return out.plan();
}

function* readRiffChunk(pos: number, riffEnd: number): Walk<{ type: string; end: number }> {
  if (pos + 8 > riffEnd) throw new InvalidImage(`the file ends inside a chunk header at byte ${pos}`);
  const header = yield* read(pos, 8);
  const type = header.toString("latin1", 0, 4);
  const size = header.readUInt32LE(4);
  const end = pos + 8 + size + (size % 2);
  if (end > riffEnd) throw new InvalidImage(`the ${JSON.stringify(type)} chunk runs past the RIFF end`);
  return { type, end };
}

/**
 * The start of the VP8X chunk at `pos` with its EXIF and XMP flags cleared, so it does not
 * announce chunks that are gone; undefined when neither flag is set (the chunk stays as it is).
 */
function* withoutMetadataFlags(pos: number): Walk<Buffer | undefined> {
  const head = yield* read(pos, VP8X_HEAD);
  if (head.length < VP8X_HEAD || head.readUInt32LE(4) < 10) {
    throw new InvalidImage("the VP8X chunk is too short");
  }
  const flags = head[8] ?? 0;
  if ((flags & (VP8X_EXIF_FLAG | VP8X_XMP_FLAG)) === 0) return undefined;
  const copy = Buffer.from(head);
  copy[8] = flags & ~(VP8X_EXIF_FLAG | VP8X_XMP_FLAG);
  return copy;
}
