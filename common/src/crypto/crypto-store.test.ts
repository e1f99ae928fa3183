import { describe, expect, it } from "vitest";
import { drop, restore, snapshot } from "./crypto-store.ts";

const idb = (globalThis as unknown as { indexedDB: IDB }).indexedDB;
interface IDB {
  open(name: string, version?: number): Req & { onupgradeneeded: (() => void) | null };
  databases(): Promise<{ name?: string }[]>;
}
interface Req {
  result: Db;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface Db {
  createObjectStore(name: string): { put(value: unknown, key: unknown): unknown };
  transaction(
    names: string[],
    mode: string,
  ): { objectStore(n: string): { put(v: unknown, k: unknown): unknown }; oncomplete: (() => void) | null };
  close(): void;
}

/** A database with one store and one record, left open when `keepOpen`. */
async function make(name: string, value: string, keepOpen = false): Promise<Db> {
  const open = idb.open(name, 1);
  open.onupgradeneeded = () => open.result.createObjectStore("s");
  const db = await new Promise<Db>((resolve, reject) => {
    open.onsuccess = () => {
      resolve(open.result);
    };
    open.onerror = reject;
  });
  const tx = db.transaction(["s"], "readwrite");
  tx.objectStore("s").put(value, "k");
  await new Promise<void>((resolve) => (tx.oncomplete = resolve));
  if (!keepOpen) db.close();
  return db;
}
const names = async () => (await idb.databases()).map((d) => d.name).sort();

describe("the in-memory crypto store", () => {
  it("snapshots a device's databases and puts them back under the names of a new run", async () => {
    await make("dev|A|r1::crypto", "olm account");
    const saved = await snapshot("dev|A|r1");
    await restore(saved, (n) => n.replace("|r1", "|r2"));
    expect(await names()).toEqual(expect.arrayContaining(["dev|A|r1::crypto", "dev|A|r2::crypto"]));
    const again = await snapshot("dev|A|r2");
    expect(again.includes(Buffer.from("olm account"))).toBe(true);
  });

  it("drops the databases of one prefix only, also once a connection still open closes", async () => {
    await make("dev|B|r1::crypto", "b");
    await make("dev|B|r1::other", "b2");
    await make("dev|BB|r1::crypto", "not b");
    const open = await make("dev|C|r1::crypto", "c", true);
    await drop("dev|B|r1");
    expect((await names()).filter((n) => n?.startsWith("dev|B|"))).toEqual([]);
    expect(await names()).toContain("dev|BB|r1::crypto");
    const dropping = drop("dev|C|r1");
    setTimeout(() => {
      open.close();
    }, 50);
    await dropping;
    expect((await names()).filter((n) => n?.startsWith("dev|C|"))).toEqual([]);
  });
});
