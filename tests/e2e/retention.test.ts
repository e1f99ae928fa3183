import { useTestNetwork } from "../harness/index.ts";
import { retentionSuite } from "./retention.suite.ts";

retentionSuite(useTestNetwork({ name: "retention", organisations: 2 }));
