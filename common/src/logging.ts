import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger } from "pino";

/**
 * JSON logs. Message content never goes to a log (DESIGN principle 4): the redact list is a
 * backstop for the obvious fields, not a licence to log events.
 */
export function createLogger(name: string, level: LevelWithSilent = "info", file?: string): Logger {
  const options = {
    name,
    level,
    redact: {
      paths: [
        "content",
        "*.content",
        "body",
        "*.body",
        "access_token",
        "*.access_token",
        "password",
        "*.password",
      ],
      censor: "[redacted]",
    },
  };
  return file === undefined
    ? pino(options)
    : pino(options, pino.destination({ dest: file, mkdir: true, sync: false }));
}
