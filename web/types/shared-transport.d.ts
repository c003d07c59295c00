/**
 * Every tab's transport in shared mode; the leader's also runs the Hub.
 */
export class SharedTransport {
    /**
     * @param {TransportOptions} opts  for the leader's StompTransport
     * @param {TransportHooks & SharedHooks} hooks
     * @param {SharedSettings} shared
     */
    constructor(opts: TransportOptions, hooks: TransportHooks & SharedHooks, shared: SharedSettings);
    /** The generation of this tab's newest attachment (stop() bumps it too). */
    get gen(): number;
    /** The generation of the live attachment (the leader's connection is CONNECTED), else 0. */
    get liveGen(): number;
    /** Failed attempts of the leader's connection since its last stable one. */
    get attempt(): number;
    /** @returns {Connection|null} */
    get connection(): Connection | null;
    /** @returns {SharedMode} */
    get mode(): SharedMode;
    /** The leader's tab id, null while none is known. */
    get leaderTab(): string;
    /** @param {number} gen */
    canAck(gen: number): boolean;
    start(): void;
    /**
     * Leave the group: step down if leading (the next tab in the lock's queue
     * takes over), tell the hub this tab is gone.
     * @returns {() => Promise<void>} disconnects the leader's socket, if this tab led
     */
    stop(): () => Promise<void>;
    /** Take part: hold this tab's member lock, listen, queue for leadership. */
    open(): Promise<void>;
}
export type SharedMode = "shared-leader" | "shared-follower";
/**
 * what shared mode tells the client in addition
 */
export type SharedHooks = {
    /**
     * another tab (or this one) leads now
     */
    leader: (info: {
        tabId: string;
        self: boolean;
    }) => void;
    /**
     * this tab's id (for the leader's session request)
     */
    tabId: () => string;
    /**
     * tab sessions: get this tab's own
     * session (its queue exists, its id is final) before it joins; rejects with
     * a SessionError (`fatal`: retrying cannot help)
     */
    ownSession?: () => Promise<unknown>;
    /**
     * tab sessions: the leader's target before every attempt, with a token that
     * also reads the queues of the tabs `tabs`
     */
    prepareLeader?: (tabs: string[]) => Promise<LeaderTarget | {
        fatal: Error;
    }>;
};
/**
 * granted: the queues (and streams) the token reads; grantedTabs: the tabs
 * whose queue it reads; missing: requested tabs without a queue
 */
export type LeaderTarget = Target & {
    granted: string[];
    grantedTabs: string[];
    missing: string[];
};
export type SharedSettings = {
    /**
     * navigator.locks
     */
    locks: LockManagerLike;
    /**
     * the group: tabs with the same key share a
     * connection (a function: asked once this tab has its own session)
     */
    key: string | (() => string);
    /**
     * tab-session mode (ownSession, prepareLeader)
     */
    sessions?: boolean;
    /**
     * default: new BroadcastChannel(name)
     */
    channel?: (name: string) => BroadcastChannel;
};
/**
 * one tab's subscription on the shared connection
 */
export type HubSub = {
    /**
     * its STOMP subscription id on the shared connection
     */
    hubId: string;
    /**
     * the tab's member id
     */
    member: string;
    /**
     * the tab's own subscription id
     */
    id: string;
    /**
     * ack ids delivered and not yet acked/nacked
     */
    unacked: Set<string>;
};
import type { TransportOptions } from './transport.js';
import type { TransportHooks } from './transport.js';
import type { LockManagerLike } from './leader.js';
import type { Connection } from './transport.js';
import { Election } from './leader.js';
/**
 * @typedef {object} HubSub  one tab's subscription on the shared connection
 * @property {string} hubId   its STOMP subscription id on the shared connection
 * @property {string} member  the tab's member id
 * @property {string} id      the tab's own subscription id
 * @property {Set<string>} unacked  ack ids delivered and not yet acked/nacked
 */
/**
 * The leader's side: the one StompTransport, and every tab's subscriptions on it.
 */
declare class Hub {
    /** @param {SharedTransport} owner @param {string} me */
    constructor(owner: SharedTransport, me: string);
    start(): void;
    /** Step down: no more connection; the broker requeues everything unacked. */
    stop(): () => Promise<void>;
    /** A tab's request. */
    receive(m: any): void;
}
import type { Target } from './transport.js';
import { StompTransport } from './transport.js';
export {};
