import { describe, expect, it } from "vitest";
import { ghostLocalpart, parseGhostLocalpart, vendorOfGhost } from "./ghosts.ts";

describe("ghost user IDs", () => {
  it("keep readable IDs readable and escape the rest, reversibly", () => {
    expect(ghostLocalpart("refmsg", "anna")).toBe("bridge_refmsg_anna");
    expect(ghostLocalpart("refmsg", "Anna Smit/ü")).toBe("bridge_refmsg_=41nna=20=53mit=2f=c3=bc");
    for (const id of ["anna", "Anna Smit/ü", "x_y=z", "dr.o'neil@ward-5"])
      expect(parseGhostLocalpart(ghostLocalpart("refmsg", id))).toEqual({ vendor: "refmsg", remoteId: id });
    expect(parseGhostLocalpart("bridge_refmsg_UPPER")).toBeUndefined();
    expect(parseGhostLocalpart("medmesh-bridge")).toBeUndefined();
    expect(vendorOfGhost("@bridge_refmsg_=41nna:hospital-a.example")).toBe("refmsg");
    expect(vendorOfGhost("@anna:hospital-a.example")).toBeUndefined();
  });
});
