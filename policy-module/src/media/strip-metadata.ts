export type StripResult =
  | { kind: "stripped"; data: Buffer; removed: string[] }
  | { kind: "unsupported" }
  | { kind: "invalid"; reason: string };

/**
 * Removes EXIF (with GPS), XMP, IPTC and comments from an image without re-encoding it: the
 * container's metadata segments are dropped and every other byte is copied unchanged, so the
 * pixels are exactly the uploaded ones. HEIC/AVIF are passed through unchanged: their metadata
 * sits in ISOBMFF item boxes whose removal means rewriting the item location table (iloc), which
 * is not done yet.
 */
export function stripImageMetadata(data: Buffer, contentType: string): StripResult {
  const type = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  try {
    if (type === "image/jpeg" || type === "image/jpg") return stripJpeg(data);
    if (type === "image/png") return stripPng(data);
    if (type === "image/webp") return stripWebp(data);
  } catch (err) {
    if (err instanceof InvalidImage) return { kind: "invalid", reason: err.message };
    throw err;
  }
  return { kind: "unsupported" };
}

class InvalidImage extends Error {}
const invalid = (reason: string): never => {
  throw new InvalidImage(reason);
};

function stripJpeg(data: Buffer): StripResult {
  if (data.length < 4 || data[0] !== 0xff || data[1] !== 0xd8) invalid("no JPEG start-of-image marker");
  const out: Buffer[] = [data.subarray(0, 2)];
  const removed = new Set<string>();
  let pos = 2;
  for (;;) {
    if (pos >= data.length) invalid("the image ends before its scan data");
    if (data[pos] !== 0xff) invalid(`expected a marker at byte ${String(pos)}`);
    let markerPos = pos;
    while (data[markerPos + 1] === 0xff) markerPos++; // fill bytes before a marker
    const marker = data[markerPos + 1];
    if (marker === undefined) invalid("truncated marker");
    const m = marker as number;
    if (m === 0xd9) invalid("the image ends before its scan data");
    if ((m >= 0xd0 && m <= 0xd7) || m === 0x01) {
      out.push(data.subarray(pos, markerPos + 2)); // standalone markers carry no length
      pos = markerPos + 2;
      continue;
    }
    if (markerPos + 4 > data.length) invalid("truncated segment header");
    const length = data.readUInt16BE(markerPos + 2);
    const end = markerPos + 2 + length;
    if (length < 2 || end > data.length) invalid("a segment runs past the end of the file");
    if (m === 0xda) {
      out.push(data.subarray(pos)); // start of scan: the entropy-coded data and the rest, as they are
      break;
    }
    const kind = jpegMetadataKind(m, data.subarray(markerPos + 4, end));
    if (kind) removed.add(kind);
    else out.push(data.subarray(pos, end));
    pos = end;
  }
  return { kind: "stripped", data: Buffer.concat(out), removed: [...removed] };
}

function jpegMetadataKind(marker: number, payload: Buffer): string | undefined {
  const starts = (s: string): boolean => payload.subarray(0, s.length).toString("latin1") === s;
  if (marker === 0xe1 && starts("Exif\0")) return "EXIF";
  if (
    marker === 0xe1 &&
    (starts("http://ns.adobe.com/xap/1.0/\0") || starts("http://ns.adobe.com/xmp/extension/\0"))
  )
    return "XMP";
  if (marker === 0xed) return "IPTC"; // APP13: Photoshop image resources, where IPTC lives
  if (marker === 0xfe) return "comment";
  return undefined;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PNG_METADATA: Record<string, string> = {
  eXIf: "EXIF",
  tEXt: "text",
  zTXt: "text",
  iTXt: "text",
  tIME: "time",
};

function stripPng(data: Buffer): StripResult {
  if (!data.subarray(0, 8).equals(PNG_SIGNATURE)) invalid("no PNG signature");
  const out: Buffer[] = [PNG_SIGNATURE];
  const removed = new Set<string>();
  let pos = 8;
  for (;;) {
    if (pos + 12 > data.length) invalid("truncated chunk");
    const length = data.readUInt32BE(pos);
    const end = pos + 12 + length;
    if (end > data.length) invalid("a chunk runs past the end of the file");
    const type = data.subarray(pos + 4, pos + 8).toString("latin1");
    if (crc32(data.subarray(pos + 4, pos + 8 + length)) !== data.readUInt32BE(pos + 8 + length)) {
      invalid(`bad CRC in the ${type} chunk`);
    }
    const kind = PNG_METADATA[type];
    if (kind) {
      const isXmp =
        type === "iTXt" && data.subarray(pos + 8, pos + 8 + 17).toString("latin1") === "XML:com.adobe.xmp";
      removed.add(isXmp ? "XMP" : kind);
    } else out.push(data.subarray(pos, end));
    pos = end;
    if (type === "IEND") break;
  }
  return { kind: "stripped", data: Buffer.concat(out), removed: [...removed] };
}

function stripWebp(data: Buffer): StripResult {
  if (
    data.length < 12 ||
    data.toString("latin1", 0, 4) !== "RIFF" ||
    data.toString("latin1", 8, 12) !== "WEBP"
  ) {
    invalid("no RIFF/WEBP header");
  }
  const riffEnd = 8 + data.readUInt32LE(4);
  if (riffEnd > data.length) invalid("the RIFF size runs past the end of the file");
  const chunks: Buffer[] = [];
  const removed = new Set<string>();
  let pos = 12;
  while (pos < riffEnd) {
    if (pos + 8 > riffEnd) invalid("truncated chunk");
    const type = data.toString("latin1", pos, pos + 4);
    const size = data.readUInt32LE(pos + 4);
    const end = pos + 8 + size + (size % 2); // chunks are padded to an even size
    if (end > riffEnd) invalid(`the ${type} chunk runs past the end of the file`);
    if (type === "EXIF") removed.add("EXIF");
    else if (type === "XMP ") removed.add("XMP");
    else if (type === "VP8X") {
      const vp8x = Buffer.from(data.subarray(pos, end));
      vp8x[8] = (vp8x[8] ?? 0) & ~0x0c; // clear the EXIF (0x08) and XMP (0x04) flags
      chunks.push(vp8x);
    } else chunks.push(data.subarray(pos, end));
    pos = end;
  }
  const body = Buffer.concat(chunks);
  const header = Buffer.alloc(12);
  header.write("RIFF", 0, "latin1");
  header.writeUInt32LE(4 + body.length, 4);
  header.write("WEBP", 8, "latin1");
  return { kind: "stripped", data: Buffer.concat([header, body]), removed: [...removed] };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = (CRC_TABLE[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
