/**
 * The part of a stompjs Client a subscription and the receipt sender use:
 * SUBSCRIBE with a receipt, UNSUBSCRIBE, SEND with a receipt. The MESSAGE
 * frames it delivers ack and nack themselves, on the connection that
 * delivered them.
 * @typedef {Pick<Client, 'connected'|'subscribe'|'unsubscribe'|'watchForReceipt'|'publish'>} Connection
 */
/**
 * Where and how the next attempt connects.
 * @typedef {object} Target
 * @property {string[]} urls  the Web-STOMP URLs (one per node; the transport
 *   picks one); empty: webSocketFactory gets undefined
 * @property {Record<string, string>} connectHeaders  CONNECT's host, login, passcode
 */
/**
 * @typedef {object} TransportHooks  how the transport asks the client, and tells it
 * @property {() => (Target|{fatal: Error}|Promise<Target|{fatal: Error}>)} prepare
 *   before every attempt (a Target at once opens the socket in the same task):
 *   a rejection is a failed attempt (back-off), `{fatal}` ends it for good
 * @property {(connection: Connection, gen: number) => Promise<unknown>} subscribe
 *   on CONNECTED: send every SUBSCRIBE; resolves once the broker confirmed them
 * @property {(detail: {attempt: number, url: string|undefined}, offlineSince: number) => void} connected
 *   every SUBSCRIBE is confirmed; offlineSince: when the broker was last heard
 *   before this connection (0: connected before, or never)
 * @property {(detail: {attempt: number, delayMs: number, error: Error, url?: string}) => void} reconnecting
 *   an attempt or a connection ended; the next attempt follows after delayMs
 * @property {(error: Error) => void} fatal  prepare() gave up: retrying cannot help
 * @property {(msg: string) => void} debug
 */
/**
 * @typedef {object} TransportOptions
 * @property {number} heartbeatMs
 * @property {boolean} heartbeatWorker
 * @property {number} connectTimeoutMs
 * @property {{initialMs: number, maxMs: number}} reconnect
 * @property {number} stableMs
 * @property {((url: string|undefined) => WebSocket)|undefined} webSocketFactory
 */
/**
 * This tab's own STOMP connection. Every attempt has a generation number
 * (gen): callbacks of an ended attempt are ignored, and a message is acked
 * only on the connection (gen) that delivered it.
 */
export class StompTransport {
    /**
     * @param {TransportOptions} opts
     * @param {TransportHooks} hooks
     */
    constructor(opts: TransportOptions, hooks: TransportHooks);
    /** The generation of the newest attempt (stop() bumps it too). */
    get gen(): number;
    /** The generation of the CONNECTED connection, else 0. */
    get liveGen(): number;
    /** Failed attempts since the last stable connection. */
    get attempt(): number;
    /** @returns {Connection|null} the connection of the current attempt (CONNECTED only when liveGen is not 0) */
    get connection(): Connection | null;
    /**
     * Whether a frame delivered on connection `gen` can be acked now: it is
     * the live connection and its socket is open.
     * @param {number} gen
     */
    canAck(gen: number): boolean;
    /** Start a run of attempts (call open() for the first one). */
    start(): void;
    /**
     * End the run: no more attempts, the live connection is no longer live.
     * @returns {() => Promise<void>} disconnects the socket (DISCONNECT, close)
     */
    stop(): () => Promise<void>;
    /** One connection attempt. */
    open(): Promise<void>;
}
/**
 * The part of a stompjs Client a subscription and the receipt sender use:
 * SUBSCRIBE with a receipt, UNSUBSCRIBE, SEND with a receipt. The MESSAGE
 * frames it delivers ack and nack themselves, on the connection that
 * delivered them.
 */
export type Connection = Pick<Client, "connected" | "subscribe" | "unsubscribe" | "watchForReceipt" | "publish">;
/**
 * Where and how the next attempt connects.
 */
export type Target = {
    /**
     * the Web-STOMP URLs (one per node; the transport
     * picks one); empty: webSocketFactory gets undefined
     */
    urls: string[];
    /**
     * CONNECT's host, login, passcode
     */
    connectHeaders: Record<string, string>;
};
/**
 * how the transport asks the client, and tells it
 */
export type TransportHooks = {
    /**
     *   before every attempt (a Target at once opens the socket in the same task):
     *   a rejection is a failed attempt (back-off), `{fatal}` ends it for good
     */
    prepare: () => (Target | {
        fatal: Error;
    } | Promise<Target | {
        fatal: Error;
    }>);
    /**
     *   on CONNECTED: send every SUBSCRIBE; resolves once the broker confirmed them
     */
    subscribe: (connection: Connection, gen: number) => Promise<unknown>;
    /**
     *   every SUBSCRIBE is confirmed; offlineSince: when the broker was last heard
     *   before this connection (0: connected before, or never)
     */
    connected: (detail: {
        attempt: number;
        url: string | undefined;
    }, offlineSince: number) => void;
    /**
     *   an attempt or a connection ended; the next attempt follows after delayMs
     */
    reconnecting: (detail: {
        attempt: number;
        delayMs: number;
        error: Error;
        url?: string;
    }) => void;
    /**
     * prepare() gave up: retrying cannot help
     */
    fatal: (error: Error) => void;
    debug: (msg: string) => void;
};
export type TransportOptions = {
    heartbeatMs: number;
    heartbeatWorker: boolean;
    connectTimeoutMs: number;
    reconnect: {
        initialMs: number;
        maxMs: number;
    };
    stableMs: number;
    webSocketFactory: ((url: string | undefined) => WebSocket) | undefined;
};
import { Client } from '@stomp/stompjs';
