import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from "express";
import type { Logger } from "pino";

/** Matrix-style error codes used by MedMesh services, with the HTTP status each maps to. */
export const ErrCode = {
  M_FORBIDDEN: 403,
  M_UNKNOWN_TOKEN: 401,
  M_UNAUTHORIZED: 401,
  M_MISSING_TOKEN: 401,
  M_BAD_JSON: 400,
  M_NOT_JSON: 400,
  M_INVALID_PARAM: 400,
  M_MISSING_PARAM: 400,
  M_NOT_FOUND: 404,
  M_UNRECOGNIZED: 404,
  M_TOO_LARGE: 413,
  /** The same idempotency key with a different request (MedMesh's own code: Matrix has none). */
  "ORG.MEDMESH.IDEMPOTENCY_CONFLICT": 409,
  /** A registration number already bound to another account of the organisation (MedMesh's own code). */
  "ORG.MEDMESH.NUMBER_IN_USE": 409,
  M_LIMIT_EXCEEDED: 429,
  M_UNKNOWN: 500,
  M_UNAVAILABLE: 503,
} as const;
export type ErrCode = keyof typeof ErrCode;

export class ApiError extends Error {
  override name = "ApiError";
  readonly errcode: ErrCode;
  readonly status: number;
  constructor(errcode: ErrCode, message: string) {
    super(message);
    this.errcode = errcode;
    this.status = ErrCode[errcode];
  }
  toJSON(): { errcode: ErrCode; error: string } {
    return { errcode: this.errcode, error: this.message };
  }
}

/** Express 5 forwards rejected promises itself; this wrapper keeps handler types honest. */
export function asyncHandler(fn: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    fn(req, res).catch(next);
  };
}

export function errorMiddleware(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const apiError =
      err instanceof ApiError
        ? err
        : isBodyParserError(err)
          ? new ApiError(err.type === "entity.too.large" ? "M_TOO_LARGE" : "M_NOT_JSON", err.message)
          : undefined;
    if (apiError) {
      res.status(apiError.status).json(apiError.toJSON());
      return;
    }
    log.error({ err, method: req.method, path: req.path }, "unhandled error");
    res.status(500).json({ errcode: "M_UNKNOWN", error: "Internal server error" });
  };
}

function isBodyParserError(err: unknown): err is Error & { type: string } {
  return err instanceof Error && typeof (err as { type?: unknown }).type === "string";
}
