import "fake-indexeddb/auto";
import { deserialize, serialize } from "node:v8";

/**
 * The Rust crypto (wasm) keeps its state — the device's Olm account, Olm sessions, megolm
 * sessions — only in IndexedDB. Node has none, so MedMesh gives it an in-memory one
 * (fake-indexeddb) and makes it durable itself: a snapshot of the device's databases goes to the
 * service's store after every change, before the change is acknowledged to anyone, and is put back
 * before the machine is opened after a restart. A device, and every key it received, thus survive
 * a crash. Used by the bridge's ghosts (an OlmMachine each) and the verification bot (matrix-js-sdk).
 * A subpath of its own (`@medmesh/common/crypto-store`): importing it installs a global IndexedDB.
 */

// The slice of the IndexedDB API used here (the project compiles without the DOM library).
type IDBValidKey = unknown;
interface IDBRequest<T> {
  result: T;
  error: Error | null;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface IDBOpenDBRequest extends IDBRequest<IDBDatabase> {
  onupgradeneeded: (() => void) | null;
}
interface IDBIndex {
  keyPath: string | string[];
  unique: boolean;
  multiEntry: boolean;
}
interface IDBCursorWithValue {
  primaryKey: IDBValidKey;
  value: unknown;
  continue(): void;
}
interface IDBObjectStore {
  keyPath: string | string[] | null;
  autoIncrement: boolean;
  indexNames: Iterable<string>;
  index(name: string): IDBIndex;
  openCursor(): IDBRequest<IDBCursorWithValue | null>;
  put(value: unknown, key?: IDBValidKey): unknown;
  createIndex(name: string, keyPath: string | string[], o: { unique: boolean; multiEntry: boolean }): unknown;
}
interface IDBTransaction {
  error: Error | null;
  oncomplete: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
  objectStore(name: string): IDBObjectStore;
}
interface IDBDatabase {
  version: number;
  objectStoreNames: Iterable<string>;
  transaction(names: string[], mode: "readonly" | "readwrite"): IDBTransaction;
  createObjectStore(
    name: string,
    o: { keyPath: string | string[] | null; autoIncrement: boolean },
  ): IDBObjectStore;
  close(): void;
}
interface IDBFactory {
  open(name: string, version?: number): IDBOpenDBRequest;
  deleteDatabase(name: string): IDBRequest<unknown>;
  databases(): Promise<{ name?: string }[]>;
}
const indexedDB = (globalThis as unknown as { indexedDB: IDBFactory }).indexedDB;

interface StoreDump {
  name: string;
  keyPath: string | string[] | null;
  autoIncrement: boolean;
  indexes: { name: string; keyPath: string | string[]; unique: boolean; multiEntry: boolean }[];
  records: [IDBValidKey, unknown][];
}
interface DatabaseDump {
  name: string;
  version: number;
  stores: StoreDump[];
}

const request = <T>(r: IDBRequest<T>): Promise<T> =>
  new Promise((resolve, reject) => {
    r.onsuccess = () => {
      resolve(r.result);
    };
    r.onerror = () => {
      reject(r.error ?? new Error("IndexedDB request failed"));
    };
  });

const done = (tx: IDBTransaction): Promise<void> =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => {
      resolve();
    };
    tx.onerror = tx.onabort = () => {
      reject(tx.error ?? new Error("IndexedDB transaction failed"));
    };
  });

async function dumpDatabase(name: string): Promise<DatabaseDump> {
  const db = await request(indexedDB.open(name));
  try {
    const names = [...db.objectStoreNames];
    const stores: StoreDump[] = [];
    if (names.length > 0) {
      const tx = db.transaction(names, "readonly");
      for (const storeName of names) {
        const store = tx.objectStore(storeName);
        const records: [IDBValidKey, unknown][] = [];
        await new Promise<void>((resolve, reject) => {
          const cursor = store.openCursor();
          cursor.onsuccess = () => {
            const c = cursor.result;
            if (!c) {
              resolve();
              return;
            }
            records.push([c.primaryKey, c.value]);
            c.continue();
          };
          cursor.onerror = () => {
            reject(cursor.error ?? new Error("IndexedDB cursor failed"));
          };
        });
        stores.push({
          name: storeName,
          keyPath: store.keyPath,
          autoIncrement: store.autoIncrement,
          indexes: [...store.indexNames].map((i) => {
            const index = store.index(i);
            return { name: i, keyPath: index.keyPath, unique: index.unique, multiEntry: index.multiEntry };
          }),
          records,
        });
      }
      await done(tx);
    }
    return { name, version: db.version, stores };
  } finally {
    db.close();
  }
}

async function restoreDatabase(dump: DatabaseDump): Promise<void> {
  await request(indexedDB.deleteDatabase(dump.name));
  const open = indexedDB.open(dump.name, dump.version);
  open.onupgradeneeded = () => {
    const db = open.result;
    for (const s of dump.stores) {
      const store = db.createObjectStore(s.name, { keyPath: s.keyPath, autoIncrement: s.autoIncrement });
      for (const i of s.indexes)
        store.createIndex(i.name, i.keyPath, { unique: i.unique, multiEntry: i.multiEntry });
    }
  };
  const db = await request(open);
  try {
    if (dump.stores.length === 0) return;
    const tx = db.transaction(
      dump.stores.map((s) => s.name),
      "readwrite",
    );
    for (const s of dump.stores) {
      const store = tx.objectStore(s.name);
      for (const [key, value] of s.records) {
        if (s.keyPath === null) store.put(value, key);
        else store.put(value);
      }
    }
    await done(tx);
  } finally {
    db.close();
  }
}

/** Every IndexedDB database whose name starts with `prefix`, as one buffer. */
export async function snapshot(prefix: string): Promise<Buffer> {
  const names = (await indexedDB.databases())
    .map((d) => d.name)
    .filter((n): n is string => n?.startsWith(prefix) === true);
  const dumps: DatabaseDump[] = [];
  for (const name of names) dumps.push(await dumpDatabase(name));
  return serialize(dumps);
}

/**
 * Puts a snapshot back (replacing databases of the same names), each under `rename(name)` when
 * given: a process that still has a connection open to the old names (the wasm side closes them
 * only when collected) would otherwise block the replacement.
 */
export async function restore(data: Buffer, rename: (name: string) => string = (n) => n): Promise<void> {
  for (const dump of deserialize(data) as DatabaseDump[])
    await restoreDatabase({ ...dump, name: rename(dump.name) });
}

/**
 * Deletes every IndexedDB database whose name starts with `prefix` (a device closed for good: its
 * state is in the store). A deletion blocked by a connection still open completes once it closes.
 */
export async function drop(prefix: string): Promise<void> {
  const names = (await indexedDB.databases())
    .map((d) => d.name)
    .filter((n): n is string => n?.startsWith(prefix) === true);
  await Promise.all(names.map((n) => request(indexedDB.deleteDatabase(n))));
}
