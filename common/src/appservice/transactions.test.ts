import { describe, expect, it } from "vitest";
import { transactionKey } from "./transactions.ts";

describe("transactionKey", () => {
  const events = [{ event_id: "$a" }, { event_id: "$b" }];

  it("recognises a resend, even one without its ephemeral part", () => {
    expect(transactionKey("7", { events, ephemeral: [{ type: "m.receipt" }] })).toBe(
      transactionKey("7", { events }),
    );
  });

  it("tells apart a reused ID that carries other events (Synapse restarted its numbering)", () => {
    expect(transactionKey("1", { events })).not.toBe(transactionKey("1", { events: [{ event_id: "$c" }] }));
    expect(transactionKey("1", { events })).not.toBe(transactionKey("2", { events }));
  });

  it("keys ephemeral-only transactions by what they carry", () => {
    const receipt = (ts: number) => ({ events: [], ephemeral: [{ type: "m.receipt", content: { ts } }] });
    expect(transactionKey("1", receipt(1))).not.toBe(transactionKey("1", receipt(2)));
    expect(transactionKey("1", receipt(1))).toBe(transactionKey("1", receipt(1)));
  });
});
