/**
 * The TI-M test driver's two numbers, in one run on one organisation (real Synapse + MedMesh):
 *   npm run bench:tim-driver          (BENCH_ROOMS rooms per device, default 20)
 * - `POST /` cleanup with 3 devices in BENCH_ROOMS rooms each (target ≤ 5 s);
 * - the driver's RSS with 9 logged-in devices (target ≤ 300 MB).
 * The driver runs as a process of its own (tim-driver/src/main.ts), so its RSS is its own and
 * not the runner's (which also holds the policy module and the bridge).
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { REPO_ROOT } from "@medmesh/deploy";
import { freePorts, startTestNetwork } from "../tests/harness/index.ts";

const ROOMS = Number(process.env.BENCH_ROOMS ?? 20);
const DEVICES = 9;

const net = await startTestNetwork({ name: "bench-tim-driver", organisations: 1 });
let failed = false;
let child: ReturnType<typeof spawn> | undefined;
const cleanupLog: string[] = [];
try {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  const accounts = [];
  for (let i = 1; i <= DEVICES; i++) {
    const u = await net.registerUser(org, `bench-tim-${String(i)}`);
    accounts.push({ username: u.localpart, password: u.password, display_name: `Bench device ${String(i)}` });
  }
  const [port] = await freePorts(1);
  const configFile = join(net.dataDir, "tim-driver.json");
  await writeFile(
    configFile,
    JSON.stringify({
      listen: { host: "127.0.0.1", port },
      homeserver: { client_url: org.clientUrl, server_name: org.serverName },
      accounts,
      log_level: "info",
    }),
  );
  const proc = spawn(
    process.execPath,
    [join(REPO_ROOT, "tim-driver", "src", "main.ts"), "--config", configFile],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  child = proc;
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on("data", (chunk: Buffer) => {
      const text = chunk.toString();
      if (text.includes("tim-driver listening")) resolve();
      // The driver's own breakdown of the cleanup (logging out, then the rooms).
      for (const line of text.split("\n")) if (line.includes('"msg":"cleanup')) cleanupLog.push(line);
    });
    proc.once("exit", (code) => {
      reject(new Error(`the driver exited (${String(code)})`));
    });
  });
  const base = `http://127.0.0.1:${String(port)}`;
  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(base + path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${String(res.status)} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  const rss = (field: "VmRSS" | "VmHWM"): number => {
    const status = readFileSync(`/proc/${String(proc.pid)}/status`, "utf8");
    const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
    return kb / 1024;
  };

  const devices = Array.from({ length: DEVICES }, (_, i) => i + 1);
  for (const id of devices)
    await call("POST", `/devices/${String(id)}/claim`, { claimerName: "bench", claimFor: 3600 });
  const loginStart = Date.now();
  for (const id of devices) await call("POST", `/devices/${String(id)}/login`, {});
  const loginMs = Date.now() - loginStart;

  const roomsStart = Date.now();
  // One after another: a burst of room creations on a busy machine times out the policy checks.
  for (const id of [1, 2, 3])
    for (let r = 0; r < ROOMS; r++)
      await call("POST", `/devices/${String(id)}/rooms`, { name: `bench ${String(id)}-${String(r)}` });
  const roomsMs = Date.now() - roomsStart;
  await new Promise((r) => setTimeout(r, 2000));
  const rssNine = rss("VmRSS");
  const peak = rss("VmHWM");

  const cleanStart = Date.now();
  await call("POST", "/");
  const cleanMs = Date.now() - cleanStart;
  for (const id of [1, 2, 3]) {
    await call("POST", `/devices/${String(id)}/login`, {});
    const rooms = (await call("GET", `/devices/${String(id)}/rooms`)) as unknown[];
    if (rooms.length)
      throw new Error(`device ${String(id)} is still in ${String(rooms.length)} rooms after cleanup`);
  }

  console.log(`TI-M test driver bench (${String(DEVICES)} devices, 3 × ${String(ROOMS)} rooms)`);
  console.log(`  login of ${String(DEVICES)} devices:            ${(loginMs / 1000).toFixed(1)} s`);
  console.log(`  creating 3 × ${String(ROOMS)} rooms:            ${(roomsMs / 1000).toFixed(1)} s`);
  console.log(
    `  driver RSS, 9 logged-in devices: ${rssNine.toFixed(0)} MB (peak ${peak.toFixed(0)} MB; target ≤ 300 MB)`,
  );
  console.log(
    `  POST / cleanup, 3 × ${String(ROOMS)} rooms:     ${(cleanMs / 1000).toFixed(2)} s (target ≤ 5 s)`,
  );
  for (const line of cleanupLog) {
    const { msg, logoutMs, roomsMs, rooms } = JSON.parse(line) as {
      msg: string;
      logoutMs: number;
      roomsMs: number;
      rooms?: number;
    };
    if (msg !== "cleanup done") {
      console.log(`    one account: ${String(rooms)} rooms left and forgotten in ${String(roomsMs)} ms`);
      continue;
    }
    console.log(
      `    of which logging out 9 devices ${String(logoutMs)} ms, leaving and forgetting ${String(roomsMs)} ms`,
    );
  }
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  child?.kill("SIGTERM");
  await net.stop(failed);
}
process.exit(failed ? 1 : 0);
