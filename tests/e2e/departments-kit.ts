import { join } from "node:path";
import { createAuditLog } from "@medmesh/common";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import {
  adminApi,
  namedUsers,
  OpenApiContract,
  useTestNetwork,
  type TestNetworkOptions,
} from "../harness/index.ts";

/** The department e2e files' network: A's two physicians, a GP of B (docs/departments.md). */
export function departmentsKit(name: string, extra: Partial<TestNetworkOptions> = {}) {
  const net = useTestNetwork({
    name,
    organisations: 2,
    verifiedClinicians: {
      0: [
        { localpart: "anna", display_name: "Anna Hart", profession: "physician" },
        { localpart: "bert", display_name: "Bert Klop", profession: "physician" },
      ],
      1: [{ localpart: "gerda", display_name: "Gerda Huisarts", profession: "general practitioner" }],
    },
    ...extra,
  });
  const A = (): RunningOrganisation => net().orgs[0]!;
  const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "policy-module.yaml"));
  return {
    net,
    user: namedUsers(net),
    A,
    /** An admin API call on A's policy module, its answer checked against the OpenAPI document. */
    call: async (method: string, path: string, body?: unknown) => {
      const res = await adminApi(A(), "policy-module").fetch(path, {
        method,
        ...(body === undefined
          ? {}
          : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
      });
      await contract.check(contract.match(method, path) ?? `${method} ${path}`, res.clone());
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    auditA: () => createAuditLog(A().services.find((s) => s.name === "policy-module")!.store.knex),
  };
}

export const DEPARTMENTS_PATH = "/_medmesh/admin/v1/departments";
export const hour = 3_600_000;
