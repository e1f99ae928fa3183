/**
 * What a process tree costs, read from /proc (Linux): resident memory (RSS, and PSS, which splits
 * pages shared between processes, e.g. a PostgreSQL server's shared buffers, among them) and CPU
 * time. Used by bench/idle-footprint.ts and bench/regional.ts.
 */
import { readdirSync, readFileSync } from "node:fs";

export interface ProcessCost {
  pid: number;
  command: string;
  rssMiB: number;
  pssMiB: number;
}

const kib = (text: string, field: string): number =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(text)?.[1] ?? NaN) / 1024;

export function processCost(pid: number): ProcessCost {
  const command = readFileSync(`/proc/${String(pid)}/comm`, "utf8").trim();
  const rssMiB = kib(readFileSync(`/proc/${String(pid)}/status`, "utf8"), "VmRSS");
  const pssMiB = kib(readFileSync(`/proc/${String(pid)}/smaps_rollup`, "utf8"), "Pss");
  return { pid, command, rssMiB, pssMiB };
}

/** Parent pid of every live process. */
function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // The command may hold spaces and parentheses: the fields after the last ")" are fixed.
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      map.set(Number(name), ppid);
    } catch {
      // exited while we looked
    }
  }
  return map;
}

/** `root` and all its descendants, leaving out the subtrees of `exclude` (e.g. Synapse). */
export function processTree(root: number, exclude: readonly number[] = []): number[] {
  const parentOf = parents();
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parentOf) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const found: number[] = [];
  const visit = (pid: number): void => {
    if (exclude.includes(pid)) return;
    found.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return found;
}

export function treeCost(root: number, exclude: readonly number[] = []): ProcessCost[] {
  const costs: ProcessCost[] = [];
  for (const pid of processTree(root, exclude)) {
    try {
      costs.push(processCost(pid));
    } catch {
      // exited while we looked
    }
  }
  return costs;
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the command.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
/** USER_HZ: 100 on every Linux build Node supports. */
const CLOCK_TICKS = 100;
