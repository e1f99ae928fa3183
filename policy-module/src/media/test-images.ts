/**
 * Image fixtures for the metadata-stripping tests (unit and end-to-end): small real images with
 * EXIF (including a GPS position), XMP, IPTC, comments and text chunks added around them, built
 * here so that the tests can show exactly which bytes were there before and are gone after.
 */
import { crc32, deflateSync } from "node:zlib";

// ---------------------------------------------------------------------------------------------
// The metadata payloads, shared by the formats.

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const latin1 = (s: string): Buffer => Buffer.from(s, "latin1");
/** Degrees, minutes, seconds as three TIFF RATIONALs (numerator, denominator 1). */
const rationals = (...values: number[]): Buffer => Buffer.concat(values.flatMap((v) => [u32(v), u32(1)]));
/** A 12-byte TIFF IFD entry; `value` is the 4-byte value or offset field. */
const ifdEntry = (tag: number, type: number, count: number, value: Buffer): Buffer =>
  Buffer.concat([u16(tag), u16(type), u32(count), value]);
const ASCII = 2;
const LONG = 4;
const RATIONAL = 5;

/** The GPS latitude 52°22'0" as it is stored in the EXIF GPS IFD: present before, gone after. */
export const GPS_LATITUDE = rationals(52, 22, 0);
/** The IFD0 entry pointing at the GPS IFD (tag 0x8825 GPSInfo, type LONG, count 1). */
export const GPS_INFO_ENTRY = Buffer.concat([u16(0x8825), u16(LONG), u32(1)]);
export const CAMERA_MAKE = "MedMesh test camera";

/**
 * A big-endian TIFF structure as EXIF stores it: IFD0 with Make and a GPSInfo pointer, and a GPS
 * IFD with 52°22'N 4°53'E. Offsets count from the "MM" byte order mark.
 */
export function exifWithGps(): Buffer {
  const make = latin1(`${CAMERA_MAKE}\0`); // 20 bytes
  const ifd0At = 8;
  const makeAt = ifd0At + 2 + 2 * 12 + 4; // 38
  const gpsIfdAt = makeAt + make.length; // 58
  const latitudeAt = gpsIfdAt + 2 + 4 * 12 + 4; // 112
  const longitudeAt = latitudeAt + 24; // 136
  return Buffer.concat([
    latin1("MM\0*"),
    u32(ifd0At),
    u16(2),
    ifdEntry(0x010f, ASCII, make.length, u32(makeAt)),
    ifdEntry(0x8825, LONG, 1, u32(gpsIfdAt)),
    u32(0), // no IFD1
    make,
    u16(4),
    ifdEntry(0x0001, ASCII, 2, latin1("N\0\0\0")), // GPSLatitudeRef
    ifdEntry(0x0002, RATIONAL, 3, u32(latitudeAt)), // GPSLatitude
    ifdEntry(0x0003, ASCII, 2, latin1("E\0\0\0")), // GPSLongitudeRef
    ifdEntry(0x0004, RATIONAL, 3, u32(longitudeAt)), // GPSLongitude
    u32(0),
    GPS_LATITUDE,
    rationals(4, 53, 0),
  ]);
}

export const XMP_NAMESPACE = "http://ns.adobe.com/xap/1.0/";
export const XMP_EXTENSION_NAMESPACE = "http://ns.adobe.com/xmp/extension/";
export const XMP_PACKET =
  '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
  '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/"' +
  ' exif:GPSLatitude="52,22.0N" exif:GPSLongitude="4,53.0E"/></rdf:RDF></x:xmpmeta>';
export const COMMENT = "taken at the ward, bed 12";
export const IPTC_CITY = "Amsterdam";

/** An IPTC-NAA record 2 dataset: 0x1C, record, dataset number, 16-bit length, value. */
const iptcDataset = (dataset: number, value: string): Buffer =>
  Buffer.concat([Buffer.from([0x1c, 2, dataset]), u16(value.length), latin1(value)]);

/** Photoshop image resources as APP13 carries them, with one 8BIM 0x0404 (IPTC-NAA) resource. */
function photoshopIptc(): Buffer {
  const iptc = Buffer.concat([iptcDataset(0x5a, IPTC_CITY), iptcDataset(0x78, COMMENT)]);
  const padding = Buffer.alloc(iptc.length % 2); // resource data is padded to an even length
  return Buffer.concat([
    latin1("Photoshop 3.0\0"),
    latin1("8BIM"),
    u16(0x0404),
    u16(0),
    u32(iptc.length),
    iptc,
    padding,
  ]);
}

// ---------------------------------------------------------------------------------------------
// JPEG

/**
 * A real 16×16 baseline colour JPEG (4:4:4, restart interval of one MCU, so the scan holds RST
 * markers and a stuffed 0xFF00) with only a JFIF APP0 segment. Made once with Pillow 13:
 *
 *   img = Image.new("RGB", (16, 16))
 *   for y in range(16):
 *       for x in range(16): img.putpixel((x, y), (x * 16, y * 16, (x + y) * 8))
 *   img.save(out, "JPEG", quality=90, subsampling=0, restart_marker_blocks=1)
 */
const CLEAN_JPEG_BASE64 =
  "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAAQABADAREAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/90ABAAB/9oADAMBAAIRAxEAPwD4/wDBfwh/1f7j9KKNYOHuIfh94//Q848F/CH/AFf7j9K9yjWP6d4d4i+H3j//0dzwX8If9X+4/SvDo1j+YuHeIvh94//S+lfBfwh/1f7j9KKNYOHuIfh94//Z";

/**
 * A real 8×8 grey progressive JPEG: six scans with DHT segments between them. Made with Pillow 13
 * from the image above: img.resize((8, 8)).convert("L").save(out, "JPEG", quality=80, progressive=True)
 */
const PROGRESSIVE_JPEG_BASE64 =
  "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/wgALCAAIAAgBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAAA//aAAgBAQAAAAEf/8QAFhAAAwAAAAAAAAAAAAAAAAAAAAQF/9oACAEBAAEFAkpp/8QAFRABAQAAAAAAAAAAAAAAAAAAADH/2gAIAQEABj8Cj//EABUQAQEAAAAAAAAAAAAAAAAAAAAx/9oACAEBAAE/IYv/2gAIAQEAAAAQ/wD/xAAVEAEBAAAAAAAAAAAAAAAAAAAA8f/aAAgBAQABPxCM/9k=";

/** The 16×16 JPEG without any metadata: what stripping `jpegWithGps()` must give back exactly. */
export const cleanJpeg = (): Buffer => Buffer.from(CLEAN_JPEG_BASE64, "base64");
export const progressiveJpeg = (): Buffer => Buffer.from(PROGRESSIVE_JPEG_BASE64, "base64");

/** One marker segment: 0xFF, the marker code, a 16-bit length that counts itself, the payload. */
export function jpegSegment(code: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xff, code]), u16(payload.length + 2), payload]);
}

/** Inserts segments right after SOI and the JFIF APP0 segment, where cameras put theirs. */
export function withJpegSegments(jpeg: Buffer, segments: Buffer[]): Buffer {
  if (jpeg[2] !== 0xff || jpeg[3] !== 0xe0) throw new Error("expected a JPEG starting with SOI, APP0");
  const app0End = 4 + jpeg.readUInt16BE(4);
  return Buffer.concat([jpeg.subarray(0, app0End), ...segments, jpeg.subarray(app0End)]);
}

/** The metadata segments `jpegWithGps()` adds: EXIF with GPS, XMP, extended XMP, IPTC, a comment. */
export function jpegMetadataSegments(): Buffer[] {
  const extendedXmp = Buffer.concat([
    latin1(`${XMP_EXTENSION_NAMESPACE}\0`),
    latin1("0123456789ABCDEF0123456789ABCDEF"), // GUID: MD5 of the extended packet, as hex
    u32(XMP_PACKET.length),
    u32(0), // offset of this part in the extended packet
    latin1(XMP_PACKET),
  ]);
  return [
    jpegSegment(0xe1, Buffer.concat([latin1("Exif\0\0"), exifWithGps()])),
    jpegSegment(0xe1, Buffer.concat([latin1(`${XMP_NAMESPACE}\0`), latin1(XMP_PACKET)])),
    jpegSegment(0xe1, extendedXmp),
    jpegSegment(0xed, photoshopIptc()),
    jpegSegment(0xfe, latin1(COMMENT)),
  ];
}

/** The 16×16 JPEG as a phone camera would upload it: EXIF with GPS, XMP, IPTC and a comment. */
export const jpegWithGps = (): Buffer => withJpegSegments(cleanJpeg(), jpegMetadataSegments());

/** `jpegWithGps()` once, for tests that only read it. */
export const JPEG_WITH_GPS: Buffer = jpegWithGps();

// DQT, DHT, DAC, DRI and the frame headers SOF0..SOF3, SOF5..SOF7 (baseline, progressive, lossless).
const DECODING_MARKERS = new Set([0xdb, 0xc4, 0xcc, 0xdd, 0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7]);

/**
 * What decides the pixels: the DQT, SOF, DHT and DRI segments plus everything from the first SOS
 * to the end (the entropy-coded data). Equal before and after stripping = the same pixels.
 */
export function jpegScanData(jpeg: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 2;
  while (pos + 4 <= jpeg.length) {
    while (jpeg[pos + 1] === 0xff) pos++; // fill bytes before a marker
    const code = jpeg[pos + 1] ?? 0;
    if (code === 0xda) return Buffer.concat([...parts, jpeg.subarray(pos)]);
    const end = pos + 2 + jpeg.readUInt16BE(pos + 2);
    if (DECODING_MARKERS.has(code)) parts.push(jpeg.subarray(pos, end));
    pos = end;
  }
  throw new Error("no start-of-scan marker");
}

// ---------------------------------------------------------------------------------------------
// PNG

export const PNG_XMP_KEYWORD = "XML:com.adobe.xmp";

/** One chunk: length, type, data, CRC-32 of type and data (node:zlib's, independent of the stripper's). */
export function pngChunk(type: string, data: Buffer): Buffer {
  const typeAndData = Buffer.concat([latin1(type), data]);
  return Buffer.concat([u32(data.length), typeAndData, u32(crc32(typeAndData))]);
}

/** A real 2×2 8-bit RGB PNG: red, blue / black, grey; with an sRGB chunk that must survive. */
function pngParts(): { head: Buffer[]; idat: Buffer; iend: Buffer } {
  const ihdr = Buffer.concat([u32(2), u32(2), Buffer.from([8, 2, 0, 0, 0])]);
  const rows = Buffer.from([0, 255, 0, 0, 0, 0, 255, 0, 0, 0, 0, 128, 128, 128]); // filter byte 0 per row
  return {
    head: [
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk("IHDR", ihdr),
      pngChunk("sRGB", Buffer.from([0])),
    ],
    idat: pngChunk("IDAT", deflateSync(rows)),
    iend: pngChunk("IEND", Buffer.alloc(0)),
  };
}

/** The 2×2 PNG without any metadata: what stripping `pngWithMetadata()` must give back exactly. */
export function cleanPng(): Buffer {
  const { head, idat, iend } = pngParts();
  return Buffer.concat([...head, idat, iend]);
}

/** The 2×2 PNG with eXIf (EXIF with GPS), XMP in iTXt, zTXt and tIME before IDAT and tEXt after it. */
export function pngWithMetadata(): Buffer {
  const { head, idat, iend } = pngParts();
  return Buffer.concat([
    ...head,
    pngChunk("eXIf", exifWithGps()),
    pngChunk("iTXt", Buffer.concat([latin1(`${PNG_XMP_KEYWORD}\0\0\0\0\0`), latin1(XMP_PACKET)])),
    pngChunk("zTXt", Buffer.concat([latin1("Description\0\0"), deflateSync(latin1(COMMENT))])),
    pngChunk("tIME", Buffer.from([0x07, 0xea, 11, 22, 12, 0, 0])),
    idat,
    pngChunk("tEXt", latin1(`Comment\0${COMMENT}`)),
    iend,
  ]);
}

// ---------------------------------------------------------------------------------------------
// WebP

/**
 * The VP8L bitstream of a real 2×2 lossless WebP (one opaque colour), 17 bytes, so its chunk needs
 * a padding byte. Taken from Pillow 13: Image.new("RGBA", (2, 2), (200, 30, 60, 255)).save(out,
 * "WEBP", lossless=True).
 */
const VP8L_2X2 = Buffer.from("2f0140000007508f2297a7ff8188e87f00", "hex");
const VP8X_ALPHA_FLAG = 0x10;
const VP8X_EXIF_FLAG = 0x08;
const VP8X_XMP_FLAG = 0x04;

/** One RIFF chunk: type, 32-bit little-endian size, data, a padding byte if the size is odd. */
export function riffChunk(type: string, data: Buffer): Buffer {
  const size = Buffer.alloc(4);
  size.writeUInt32LE(data.length);
  return Buffer.concat([latin1(type), size, data, Buffer.alloc(data.length % 2)]);
}

/** "RIFF", the size of everything after it, "WEBP", the chunks. */
export function webpFile(chunks: Buffer[]): Buffer {
  const body = Buffer.concat([latin1("WEBP"), ...chunks]);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(body.length);
  return Buffer.concat([latin1("RIFF"), size, body]);
}

/** A VP8X chunk for a 2×2 canvas (the canvas size is stored minus one, 24-bit little-endian). */
function vp8x(flags: number): Buffer {
  return riffChunk("VP8X", Buffer.from([flags, 0, 0, 0, 1, 0, 0, 1, 0, 0]));
}

/** The simple (lossless) format: just the VP8L chunk, no room for metadata. */
export const simpleWebp = (): Buffer => webpFile([riffChunk("VP8L", VP8L_2X2)]);

/** The extended format with only the alpha flag: what stripping `webpWithMetadata()` must give back. */
export const cleanWebp = (): Buffer => webpFile([vp8x(VP8X_ALPHA_FLAG), riffChunk("VP8L", VP8L_2X2)]);

/** The extended format with EXIF (with GPS) and XMP chunks, announced by the VP8X flags. */
export function webpWithMetadata(): Buffer {
  return webpFile([
    vp8x(VP8X_ALPHA_FLAG | VP8X_EXIF_FLAG | VP8X_XMP_FLAG),
    riffChunk("VP8L", VP8L_2X2),
    riffChunk("EXIF", exifWithGps()),
    riffChunk("XMP ", latin1(`${XMP_PACKET} `)), // odd length: padded
  ]);
}
