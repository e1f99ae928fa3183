/**
 * The client side of bench/regional.ts, in its own process so that clients do not share an event
 * loop (or a CPU account) with the MedMesh services it measures. Input: JSON in argv[2]; output:
 * JSON on stdout. One user per organisation, all joined to one room; each message is sent by the
 * next organisation's user in turn, and the next is sent once every other organisation's user has
 * received it (through its own /sync): the fan-out latency of each message, to each organisation.
 */
import { randomBytes } from "node:crypto";

interface Member {
  url: string;
  token: string;
}
interface Input {
  members: Member[];
  roomId: string;
  messages: number;
}
const input = JSON.parse(process.argv[2] ?? "{}") as Input;
const deadlineMs = 60_000;

interface SyncResponse {
  next_batch: string;
  rooms?: { join?: Record<string, { timeline?: { events?: { content?: { body?: unknown } }[] } }> };
}

async function sync(m: Member, since: string | undefined, timeout: number): Promise<SyncResponse> {
  const q = new URLSearchParams({ timeout: String(timeout) });
  if (since) q.set("since", since);
  const res = await fetch(`${m.url}/_matrix/client/v3/sync?${q.toString()}`, {
    headers: { authorization: `Bearer ${m.token}` },
  });
  if (!res.ok) throw new Error(`sync failed: ${String(res.status)} ${await res.text()}`);
  return (await res.json()) as SyncResponse;
}

/** A /sync loop per member: resolves the waiter of a body as soon as that member sees it. */
class Receiver {
  private since: string | undefined;
  private readonly waiters = new Map<string, () => void>();
  private readonly seen = new Set<string>();
  private running = true;
  readonly done: Promise<void>;
  private readonly member: Member;
  constructor(member: Member) {
    this.member = member;
    this.done = this.loop();
  }
  async start(): Promise<void> {
    this.since = (await sync(this.member, undefined, 0)).next_batch;
  }
  private async loop(): Promise<void> {
    while (this.since === undefined) await new Promise((r) => setTimeout(r, 10));
    while (this.running) {
      const r = await sync(this.member, this.since, 10_000);
      this.since = r.next_batch;
      for (const e of r.rooms?.join?.[input.roomId]?.timeline?.events ?? []) {
        const body = e.content?.body;
        if (typeof body !== "string") continue;
        this.seen.add(body);
        this.waiters.get(body)?.();
      }
    }
  }
  received(body: string): Promise<void> {
    if (this.seen.has(body)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`a message did not arrive within ${String(deadlineMs)} ms`));
      }, deadlineMs);
      this.waiters.set(body, () => {
        clearTimeout(timer);
        this.waiters.delete(body);
        resolve();
      });
    });
  }
  stop(): void {
    this.running = false;
  }
}

const receivers = input.members.map((m) => new Receiver(m));
await Promise.all(receivers.map((r) => r.start()));
/** latencies[message][org]: ms from the send's response to that org's /sync; the sender's is 0. */
const latencies: number[][] = [];
const sendMs: number[] = [];
const started = Date.now();
for (let i = 0; i < input.messages; i++) {
  const from = i % input.members.length;
  const sender = input.members[from];
  if (!sender) throw new Error("no members");
  const body = `regional bench ${String(i)} ${randomBytes(4).toString("hex")}`;
  const t0 = performance.now();
  const res = await fetch(
    `${sender.url}/_matrix/client/v3/rooms/${encodeURIComponent(input.roomId)}/send/m.room.message/r${String(i)}-${randomBytes(4).toString("hex")}`,
    {
      method: "PUT",
      headers: { authorization: `Bearer ${sender.token}`, "content-type": "application/json" },
      body: JSON.stringify({ msgtype: "m.text", body }),
    },
  );
  if (!res.ok) throw new Error(`send failed: ${String(res.status)} ${await res.text()}`);
  await res.arrayBuffer();
  const t1 = performance.now();
  sendMs.push(t1 - t0);
  latencies.push(
    await Promise.all(
      receivers.map(async (r, org) => {
        if (org === from) return 0;
        await r.received(body);
        return performance.now() - t1;
      }),
    ),
  );
}
const elapsedMs = Date.now() - started;
for (const r of receivers) r.stop();
process.stdout.write(JSON.stringify({ latencies, sendMs, elapsedMs }) + "\n");
process.exit(0); // the /sync long-polls still open would hold the process for their timeout
