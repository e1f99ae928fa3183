import { LeadershipLost, type Leader } from "@medmesh/common";
import type { Knex } from "knex";
import { vendorOfGhost } from "./ghosts.ts";

/** The lease name of a vendor's job is this and the vendor's ID. */
export const VENDOR_JOB_PREFIX = "bridge:";
/** The singleton job of one vendor: its queue rows and its ghosts' devices run on its leader. */
export const vendorJob = (vendor: string): string => `${VENDOR_JOB_PREFIX}${vendor}`;

/**
 * The vendors this replica leads (docs/replicas.md, "The bridge"): one lease per configured vendor
 * (`bridge:<vendor>`). Everything that carries a queue row or drives a ghost's device asks here
 * first, and each write that records an outcome or a crypto snapshot fences the vendor's lease in
 * its own transaction, so a deposed leader records nothing over its successor's.
 */
export interface VendorLeaders {
  /** Whether this replica leads the vendor now (false from its first failed renewal). */
  leads(vendor: string): boolean;
  /** The vendors this replica leads now. */
  led(): string[];
  /** Throws LeadershipLost unless this replica holds the vendor's lease (inside `trx`: until it commits). */
  fence(vendor: string, trx: Knex): Promise<void>;
  /** The vendor of a ghost (from its user ID), undefined for any other user. */
  vendorOf(userId: string): string | undefined;
  /** Whether this replica leads the vendor of the ghost (may drive its device). */
  leadsGhost(userId: string): boolean;
  /** Throws LeadershipLost unless this replica leads the ghost's vendor. */
  fenceGhost(userId: string, trx: Knex): Promise<void>;
  onElected(listener: (vendor: string) => void): void;
  onLost(listener: (vendor: string) => void): void;
}

export function vendorLeaders(job: (name: string) => Leader, vendors: readonly string[]): VendorLeaders {
  const leaders = new Map(vendors.map((v) => [v, job(vendorJob(v))]));
  const vendorOf = vendorOfGhost;
  const leads = (vendor: string): boolean => leaders.get(vendor)?.isLeader() === true;
  const fence = async (vendor: string, trx: Knex): Promise<void> => {
    const leader = leaders.get(vendor);
    if (!leader) throw new LeadershipLost(vendorJob(vendor));
    await leader.fence(trx);
  };
  return {
    leads,
    led: () => vendors.filter(leads),
    fence,
    vendorOf,
    leadsGhost: (userId) => {
      const vendor = vendorOf(userId);
      return vendor !== undefined && leads(vendor);
    },
    fenceGhost: (userId, trx) => fence(vendorOf(userId) ?? "", trx),
    onElected: (listener) => {
      for (const [vendor, leader] of leaders)
        leader.onElected(() => {
          listener(vendor);
        });
    },
    onLost: (listener) => {
      for (const [vendor, leader] of leaders)
        leader.onLost(() => {
          listener(vendor);
        });
    },
  };
}
