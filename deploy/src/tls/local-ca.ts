import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface CertPaths {
  certificate: string;
  privateKey: string;
}

/**
 * A local certificate authority for loopback federation. Peers trust it through Synapse's
 * `federation_custom_ca_list`, so certificate verification stays on — the alternative of turning
 * verification off would hide exactly the TLS mistakes a real deployment must not have.
 * Uses the openssl CLI (present on every Debian/Ubuntu host and in Synapse's image).
 */
export async function ensureLocalCa(dir: string): Promise<CertPaths> {
  const paths = { certificate: join(dir, "ca.pem"), privateKey: join(dir, "ca.key") };
  if (existsSync(paths.certificate) && existsSync(paths.privateKey)) return paths;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await newKey(paths.privateKey);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    paths.privateKey,
    "-sha256",
    "-days",
    "3650",
    "-subj",
    "/O=MedMesh local network/CN=MedMesh local CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE,pathlen:0",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    paths.certificate,
  ]);
  return paths;
}

/** Issues (once) a server certificate for the given DNS names and IP addresses. */
export async function ensureServerCertificate(
  ca: CertPaths,
  dir: string,
  names: { dns: string[]; ip: string[] },
): Promise<CertPaths> {
  const paths = { certificate: join(dir, "federation.crt"), privateKey: join(dir, "federation.key") };
  if (existsSync(paths.certificate) && existsSync(paths.privateKey)) return paths;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const csr = join(dir, "federation.csr");
  const ext = join(dir, "federation.ext");
  const san = [...names.dns.map((d) => `DNS:${d}`), ...names.ip.map((i) => `IP:${i}`)].join(",");
  await writeFile(
    ext,
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`,
  );
  await newKey(paths.privateKey);
  await openssl([
    "req",
    "-new",
    "-key",
    paths.privateKey,
    "-subj",
    `/CN=${names.dns[0] ?? names.ip[0] ?? "localhost"}`,
    "-out",
    csr,
  ]);
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.certificate,
    "-CAkey",
    ca.privateKey,
    "-CAcreateserial",
    "-days",
    "825",
    "-sha256",
    "-extfile",
    ext,
    "-out",
    paths.certificate,
  ]);
  await rm(csr);
  await rm(ext);
  return paths;
}

function newKey(file: string): Promise<void> {
  return openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run("openssl", args);
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`openssl ${args[0] ?? ""} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
}
