/**
 * A failure that retrying will not mend (refused by the other side, unknown message, a ghost that
 * cannot join, …), with the Matrix errcode when Matrix said so. Anything else is transient: the
 * appservice frame answers the transaction with 500 and Synapse sends it again.
 */
export class Permanent extends Error {
  override name = "Permanent";
  readonly errcode: string | undefined;
  constructor(message: string, opts: { errcode?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? {} : { cause: opts.cause });
    this.errcode = opts.errcode;
  }
}

export const isPermanent = (err: unknown): err is Permanent => err instanceof Permanent;
