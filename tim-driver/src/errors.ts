import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from "express";
import type { Logger } from "pino";

/**
 * The driver's documented error body (`Error` in TiMessengerTestTreiber.yaml): `errorCode` and
 * `errorMessage`. A Matrix error from the homeserver keeps its HTTP status (a 403 stays a 403) and
 * its errcode, so the suite sees what the server decided, not what the driver guessed.
 */
export class DriverError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const notFound = (what: string): DriverError => new DriverError(404, "NOT_FOUND", `${what} not found`);
export const badRequest = (message: string): DriverError => new DriverError(400, "BAD_REQUEST", message);

/** The documented 401 body (`AuthFlows`): log in with basicAuth first. */
export const UNAUTHORIZED_BODY = {
  completedAuthStages: [],
  flows: [{ stages: ["basicAuth"] }],
} as const;

export class NotLoggedIn extends Error {}

interface MatrixLikeError {
  httpStatus?: number;
  errcode?: string;
  data?: { error?: string; errcode?: string };
  message?: string;
}

function fromMatrix(err: unknown): DriverError | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const m = err as MatrixLikeError;
  if (typeof m.httpStatus !== "number") return undefined;
  const code = m.errcode ?? m.data?.errcode ?? "M_UNKNOWN";
  return new DriverError(m.httpStatus, code, m.data?.error ?? m.message ?? code);
}

export const asyncRoute =
  (fn: (req: Request, res: Response) => Promise<void>): RequestHandler =>
  (req, res, next: NextFunction) => {
    fn(req, res).catch(next);
  };

export function driverErrorMiddleware(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (err instanceof NotLoggedIn) {
      res.status(401).json(UNAUTHORIZED_BODY);
      return;
    }
    const known = err instanceof DriverError ? err : fromMatrix(err);
    if (known) {
      if (known.status >= 500) log.warn({ path: req.path, code: known.code }, known.message);
      res.status(known.status).json({ errorCode: known.code, errorMessage: known.message });
      return;
    }
    const bodyError = (err as { type?: string }).type === "entity.parse.failed";
    if (bodyError) {
      res.status(400).json({ errorCode: "BAD_REQUEST", errorMessage: "the request body is not valid JSON" });
      return;
    }
    log.error({ err, path: req.path }, "test driver request failed");
    res.status(500).json({
      errorCode: "INTERNAL",
      errorMessage: err instanceof Error ? err.message : String(err),
    });
  };
}
