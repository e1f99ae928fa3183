import { useTestNetwork } from "../harness/index.ts";
import { federationSuite } from "./federation.suite.ts";

federationSuite(useTestNetwork({ name: "federation" }));
