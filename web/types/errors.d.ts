/** A session that does not grant a subscribed stream: a deployment error, retrying cannot help. */
export function streamNotGranted(streams: any): SessionError;
/** @param {number} ms @param {any} cause */
export function sessionTimeoutError(ms: number, cause: any): SessionError;
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
    constructor(message: string, { status, code, fatal, cause }?: {
        status?: number;
        code?: string;
        fatal?: boolean;
        cause?: any;
    });
    status: number;
    code: string;
    fatal: boolean;
}
/** Handler time-out: the error a handler that did not settle in time fails with. */
export class HandlerTimeoutError extends Error {
    /** @param {string} message @param {number} timeoutMs */
    constructor(message: string, timeoutMs: number);
    timeoutMs: number;
}
