import type { Router } from "express";

/**
 * Operations of TiMessengerTestTreiber.yaml this driver does not implement. They answer 501 with
 * the documented error body, so the suite (and our contract test) tell them from a failure.
 * FHIR directory administration and search need a VZD-FHIR directory, which MedMesh does not run;
 * contact management (TI-M 1.1.x) is superseded by the permission config.
 */
export const UNIMPLEMENTED: readonly string[] = [
  "GET /devices/{deviceId}/fhir/org",
  "POST /devices/{deviceId}/fhir/org/healthcareService",
  "GET /devices/{deviceId}/fhir/org/healthcareService/{hsId}",
  "PUT /devices/{deviceId}/fhir/org/healthcareService/{hsId}",
  "DELETE /devices/{deviceId}/fhir/org/healthcareService/{hsId}",
  "GET /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpoint",
  "POST /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpoint",
  "GET /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpoint/{endId}",
  "PUT /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpoint/{endId}",
  "DELETE /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpoint/{endId}",
  "POST /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpointVisibility/{endId}",
  "DELETE /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpointVisibility/{endId}",
  "POST /devices/{deviceId}/fhir/endpointVisibility",
  "DELETE /devices/{deviceId}/fhir/endpointVisibility",
  "POST /devices/{deviceId}/fhir/fhirAuthenticate",
  "POST /devices/{deviceId}/fhir/mxidInFhirDirectory",
  "GET /devices/{deviceId}/fhir/mxidInFhirDirectory",
  "DELETE /devices/{deviceId}/fhir/mxidInFhirDirectory",
  "GET /devices/{deviceId}/fhir/searchOrganizationInFhirDirectory",
  "GET /devices/{deviceId}/fhir/searchHealthcareServiceEndpointInFhirDirectory",
  "GET /devices/{deviceId}/fhir/searchPractitionerInFhirDirectory",
  "GET /devices/{deviceId}/contacts",
  "POST /devices/{deviceId}/contacts",
  "DELETE /devices/{deviceId}/contacts/{mxid}",
];

// The document gives these a 501 without a body ("if the underlying client does not support
// practitioner FHIR-VZD administration"); the others fall under `default`, the Error body.
const BARE_501 = new Set([
  "POST /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpointVisibility/{endId}",
  "DELETE /devices/{deviceId}/fhir/org/healthcareService/{hsId}/endpointVisibility/{endId}",
  "POST /devices/{deviceId}/fhir/endpointVisibility",
  "DELETE /devices/{deviceId}/fhir/endpointVisibility",
  "POST /devices/{deviceId}/fhir/fhirAuthenticate",
  "POST /devices/{deviceId}/fhir/mxidInFhirDirectory",
  "GET /devices/{deviceId}/fhir/mxidInFhirDirectory",
  "DELETE /devices/{deviceId}/fhir/mxidInFhirDirectory",
]);

export function mountUnimplemented(router: Router): void {
  for (const op of UNIMPLEMENTED) {
    const [method = "", template = ""] = op.split(" ");
    const path = template.replace(/\{([^}]+)\}/g, ":$1");
    const m = method.toLowerCase() as "get" | "post" | "put" | "delete";
    router[m](path, (_req, res) => {
      if (BARE_501.has(op)) {
        res.status(501).end();
        return;
      }
      res.status(501).json({
        errorCode: "NOT_IMPLEMENTED",
        errorMessage: `${op} is not implemented by the MedMesh test driver`,
      });
    });
  }
}
