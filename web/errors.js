// The errors the client reports: a refused or failed tab-session request
// (SessionError) and a handler that did not settle in time (HandlerTimeoutError).

/**
 * A refused or failed tab-session request. `status` is the HTTP status (0 for a
 * network error or an unusable response), `code` the server's `error` field
 * (e.g. 'unauthenticated', 'forbidden'), `fatal` whether the client gave up
 * (4xx other than 408/429) instead of retrying with back-off.
 */
export class SessionError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, code?: string, fatal?: boolean, cause?: any}} [opts]
   */
  constructor(message, { status = 0, code, fatal = false, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'SessionError';
    this.status = status;
    this.code = code;
    this.fatal = fatal;
  }
}

/** Handler time-out: the error a handler that did not settle in time fails with. */
export class HandlerTimeoutError extends Error {
  /** @param {string} message @param {number} timeoutMs */
  constructor(message, timeoutMs) {
    super(message);
    this.name = 'HandlerTimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/** A session that does not grant a subscribed stream: a deployment error, retrying cannot help. */
export function streamNotGranted(streams) {
  return new SessionError(
    `tab session grants no stream ${streams.join(', ')}: subscribe({stream}) needs the server's tab-session callback to allow it (the response's streams: [{name, destination}])`,
    { code: 'stream_not_granted', fatal: true },
  );
}

/** @param {number} ms @param {any} cause */
export function sessionTimeoutError(ms, cause) {
  return new SessionError(`tab session request timed out after ${ms} ms`, { code: 'timeout', cause });
}
