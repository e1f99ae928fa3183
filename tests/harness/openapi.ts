import { readFileSync } from "node:fs";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parse as parseYaml } from "yaml";

interface OpenApiDocument {
  paths: Record<string, Record<string, { responses: Record<string, ResponseObject | { $ref: string }> }>>;
  components: { responses?: Record<string, ResponseObject>; schemas?: Record<string, unknown> };
}
const METHODS = new Set(["get", "put", "post", "delete", "patch", "head", "options", "trace"]);

interface ResponseObject {
  content?: Record<string, { schema: unknown }>;
}

/**
 * Checks real responses against an OpenAPI 3.1 document in the repo, so the document and the
 * implementation cannot drift apart unnoticed: an undocumented status, content type or body shape
 * fails the test that made the request.
 */
export class OpenApiContract {
  private readonly doc: OpenApiDocument;
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });

  /** `source`: a file, or an already parsed document. */
  constructor(source: string | object) {
    this.doc = (
      typeof source === "string" ? parseYaml(readFileSync(source, "utf8")) : source
    ) as OpenApiDocument;
    this.ajv.addSchema({ $id: "doc", components: this.doc.components });
  }

  /** The documented operations, e.g. ["GET /health", "PUT /_matrix/app/v1/transactions/{txnId}"]. */
  operations(): string[] {
    return Object.entries(this.doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => METHODS.has(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
  }

  /** The documented operation a request is for ("GET /a/{id}"), or undefined. */
  match(method: string, path: string): string | undefined {
    const bare = path.split("?")[0] ?? "";
    return this.operations().find((op) => {
      const [m = "", template = ""] = op.split(" ");
      const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`);
      return m === method.toUpperCase() && pattern.test(bare);
    });
  }

  /** Throws, naming the operation and the mismatch, unless `res` is a documented response. */
  async check(operation: string, res: Response): Promise<void> {
    const [method = "", path = ""] = operation.split(" ");
    const op = this.doc.paths[path]?.[method.toLowerCase()];
    if (!op) throw new Error(`${operation} is not in the OpenAPI document`);
    // OpenAPI's `default` covers every status not listed (the TI-M test driver's errors use it).
    let response = op.responses[String(res.status)] ?? op.responses.default;
    if (response && "$ref" in response)
      response = this.doc.components.responses?.[response.$ref.split("/").pop() ?? ""];
    if (!response) throw new Error(`${operation} answered ${String(res.status)}, which is not documented`);
    const type = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    if (!response.content) {
      const text = await res.text();
      if (text !== "")
        throw new Error(
          `${operation} ${String(res.status)} documents no body, but answered ${type}: ${text.slice(0, 200)}`,
        );
      return;
    }
    const media = response.content[type] ?? response.content["*/*"];
    if (!media)
      throw new Error(
        `${operation} ${String(res.status)} answered ${type}, documented: ${Object.keys(response.content ?? {}).join(", ")}`,
      );
    const body: unknown = type === "application/json" ? await res.json() : await res.text();
    const schema = JSON.parse(
      JSON.stringify(media.schema).replaceAll('"#/components/', '"doc#/components/'),
    ) as object;
    const validate = this.ajv.compile(schema);
    if (!validate(body)) {
      throw new Error(
        `${operation} ${String(res.status)} body does not match the document: ${this.ajv.errorsText(validate.errors)}`,
      );
    }
  }
}
