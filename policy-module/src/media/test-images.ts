import { deflateSync } from "node:zlib";
import { crc32 } from "./strip-metadata.ts";

/**
 * A real 16×16 colour JPEG carrying EXIF with a GPS position (52°22'N 4°53'E), XMP and a comment.
 * Made once with Pillow (the one in Synapse's venv): Image.new + putpixel gradient, then
 * save("JPEG", quality=90, exif=<Exif with GPSInfo IFD>, xmp=…, comment=b"taken at the ward").
 */
export const JPEG_WITH_GPS = Buffer.from(
  "/9j/4AAQSkZJRgABAQAAAQABAAD/4QCoRXhpZgAATU0AKgAAAAgAAgEPAAIAAAAUAAAAJoglAAQAAAABAAAAOgAAAABNZWRNZXNoIHRlc3QgY2FtZXJhAAAEAAEAAgAAAAJOAAAAAAIABQAAAAMAAABwAAMAAgAAAAJFAAAAAAQABQAAAAMAAACIAAAAAAAAADQAAAABAAAAFgAAAAEAAAAAAAAAAQAAAAQAAAABAAAANQAAAAEAAAAAAAAAAf/hAFlodHRwOi8vbnMuYWRvYmUuY29tL3hhcC8xLjAvADx4OnhtcG1ldGEgeG1sbnM6eD0iYWRvYmU6bnM6bWV0YS8iPjxyZGY6UkRGLz48L3g6eG1wbWV0YT7//gATdGFrZW4gYXQgdGhlIHdhcmT/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAAQABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD4/wDBfwh/1f7j9K958F/CH/V/uP0r2PwX8If9X+4/SvefBfwh/wBX+4/SjB4zbUPDzxD+D3z/2Q==",
  "base64",
);

/** The bytes that carry the pixels: quantisation/Huffman tables, frame header and the scan to the end. */
export function jpegPixelSegments(jpeg: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 2;
  while (pos + 4 <= jpeg.length) {
    const marker = jpeg[pos + 1] ?? 0;
    if (marker === 0xda) {
      parts.push(jpeg.subarray(pos));
      break;
    }
    const end = pos + 2 + jpeg.readUInt16BE(pos + 2);
    if ([0xdb, 0xc4, 0xc0, 0xc2, 0xdd].includes(marker)) parts.push(jpeg.subarray(pos, end));
    pos = end;
  }
  return Buffer.concat(parts);
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** A 2×2 RGB PNG with an eXIf, a tEXt and an XMP iTXt chunk; `clean` leaves them out. */
export function pngWithMetadata(clean = false): Buffer {
  const ihdr = Buffer.from([0, 0, 0, 2, 0, 0, 0, 2, 8, 2, 0, 0, 0]);
  const rows = Buffer.from([0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 9, 9, 9]);
  const meta = clean
    ? []
    : [
        pngChunk("eXIf", Buffer.from("MM\0*\0\0\0\bGPS-position", "latin1")),
        pngChunk("tEXt", Buffer.from("Comment\0taken at the ward", "latin1")),
        pngChunk("iTXt", Buffer.from("XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta/>", "latin1")),
      ];
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    ...meta,
    pngChunk("IDAT", deflateSync(rows)),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

function riffChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(type, 0, "latin1");
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, data, data.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

/** An extended-format WebP container (VP8X with the EXIF and XMP flags set) around a VP8L bitstream. */
export function webpWithMetadata(): Buffer {
  const vp8x = Buffer.alloc(10);
  vp8x[0] = 0x08 | 0x04;
  const body = Buffer.concat([
    riffChunk("VP8X", vp8x),
    riffChunk("VP8L", Buffer.from([0x2f, 0x01, 0x40, 0x00, 0x00, 0x07, 0x10, 0x11, 0x88, 0x88, 0xfe])),
    riffChunk("EXIF", Buffer.from("MM\0*GPS-position", "latin1")),
    riffChunk("XMP ", Buffer.from("<x:xmpmeta/>", "latin1")),
  ]);
  const header = Buffer.alloc(12);
  header.write("RIFF", 0, "latin1");
  header.writeUInt32LE(4 + body.length, 4);
  header.write("WEBP", 8, "latin1");
  return Buffer.concat([header, body]);
}
