import {
  RequestType,
  type KeysBackupRequest,
  type KeysClaimRequest,
  type KeysQueryRequest,
  type KeysUploadRequest,
  type RoomMessageRequest,
  type SignatureUploadRequest,
  type ToDeviceRequest,
} from "@matrix-org/matrix-sdk-crypto-wasm";

/** What an OlmMachine asks to be sent. */
export type Outgoing =
  | KeysUploadRequest
  | KeysQueryRequest
  | KeysClaimRequest
  | ToDeviceRequest
  | SignatureUploadRequest
  | RoomMessageRequest
  | KeysBackupRequest;

/**
 * The client-server request for one of a machine's outgoing requests, or undefined for a key
 * backup (the bridge keeps its keys in its own store instead).
 */
export function routeOf(r: Outgoing): { method: string; path: string; body: string } | undefined {
  switch (r.type) {
    case RequestType.KeysUpload:
      return { method: "POST", path: "/_matrix/client/v3/keys/upload", body: r.body };
    case RequestType.KeysQuery:
      return { method: "POST", path: "/_matrix/client/v3/keys/query", body: r.body };
    case RequestType.KeysClaim:
      return { method: "POST", path: "/_matrix/client/v3/keys/claim", body: r.body };
    case RequestType.SignatureUpload:
      return { method: "POST", path: "/_matrix/client/v3/keys/signatures/upload", body: r.body };
    case RequestType.ToDevice: {
      const t = r as unknown as { event_type: string; txn_id: string; body: string };
      return {
        method: "PUT",
        path: `/_matrix/client/v3/sendToDevice/${encodeURIComponent(t.event_type)}/${encodeURIComponent(t.txn_id)}`,
        body: t.body,
      };
    }
    case RequestType.RoomMessage: {
      const m = r as RoomMessageRequest;
      return {
        method: "PUT",
        path: `/_matrix/client/v3/rooms/${encodeURIComponent(m.room_id)}/send/${encodeURIComponent(m.event_type)}/${encodeURIComponent(m.txn_id)}`,
        body: m.body,
      };
    }
    default:
      return undefined;
  }
}
