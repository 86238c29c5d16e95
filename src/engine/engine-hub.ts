// One LocalEngine serving several clients: the tabs connected to a SharedWorker (worker-host.ts), or the one page of
// a dedicated worker. The model is loaded once (by the first client; later ones wait for that load or join at once).
// Requests run one at a time, taken from the clients in turn (round robin: a tab that queued ten requests does not
// make another wait for all ten). Each client has its own conversation: the GPU state holds the conversation of the
// client that ran last, and before another client's request runs it is saved (engine.saveSession, kept in this
// worker's memory) and the next client's restored (engine.restoreSession) or reset, so each conversation continues
// as if it had the engine to itself. A client that leaves (unload, or its tab closed) stops its request in progress
// within a token, drops its queued ones and its saved conversation; the last one to leave unloads the model.
import { LocalEngine } from './local-engine.ts';
import type { EngineOptions, LoadProgress } from './types.ts';

/** What a client's own callbacks receive: load progress (also of a reload after a lost device) and warnings. */
export interface HubListener {
  onProgress?: (p: LoadProgress) => void;
  onWarning?: (message: string) => void;
}

interface Job {
  body: (engine: LocalEngine) => Promise<unknown>;
  fresh: boolean; // the client's conversation is dropped before the body runs (reset, restore)
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class HubClient {
  readonly jobs: Job[] = [];
  parked?: Blob; // the conversation while another client's is on the GPU
  hasState = false; // whether it ever ran a turn since its last reset (an empty conversation is not saved)
  gone = false;
  constructor(readonly listener: HubListener) {}
}

export interface HubInfo {
  /** Clients connected now (tabs of a SharedWorker; 1 in a dedicated worker). */
  clients: number;
  /** Times the model was loaded onto the GPU by this worker (1 while it stays loaded). */
  loads: number;
}

export class EngineHub {
  private engine?: Promise<LocalEngine>;
  private loaded?: LocalEngine; // the engine, once its load has resolved
  private unloading?: Promise<void>;
  private loads = 0;
  private readonly clients: HubClient[] = []; // round-robin order
  private owner?: HubClient; // whose conversation the GPU state holds
  private running?: HubClient;
  private last = -1; // index in `clients` served last
  private fill?: LoadProgress; // the background fill's last report (backgroundExperts), for clients that join later

  /** Connect a client, loading the model with `opts` when none is loaded (the first client's options win). */
  async join(opts: EngineOptions, listener: HubListener): Promise<HubClient> {
    await this.unloading;
    const client = new HubClient(listener);
    this.clients.push(client);
    if (!this.engine) {
      this.loads++;
      this.engine = LocalEngine.load({
        ...opts,
        onProgress: (p) => {
          if (p.phase === 'fill') this.fill = p;
          for (const c of this.clients) c.listener.onProgress?.(p);
        },
        onWarning: (m) => { for (const c of this.clients) c.listener.onWarning?.(m); },
      });
      this.engine.then((e) => (this.loaded = e), () => (this.engine = undefined)); // after a failure a later client tries again
    } else if (this.loaded) {
      listener.onProgress?.({ phase: 'ready', loaded: 1, total: 1, text: 'Ready (the model was already loaded by another tab)' });
      if (this.fill) listener.onProgress?.(this.fill);
    }
    try {
      await this.engine;
    } catch (e) {
      this.remove(client);
      throw e;
    }
    return client;
  }

  info(): HubInfo {
    return { clients: this.clients.length, loads: this.loads };
  }

  /**
   * Run `body` for `client` when its turn comes, with its conversation on the GPU (`fresh`: an empty one instead).
   * The body must end on its own: a stream's body iterates the engine's generator to its end.
   */
  run<T>(client: HubClient, body: (engine: LocalEngine) => Promise<T>, fresh = false): Promise<T> {
    if (client.gone) return Promise.reject(new Error('This engine was unloaded: create a new one.'));
    return new Promise<T>((resolve, reject) => {
      client.jobs.push({ body, fresh, resolve: resolve as (v: unknown) => void, reject });
      void this.next();
    });
  }

  /** The loaded engine, for checks that need no turn (LocalEngine.stream checks a request before it queues). */
  engineFor(client: HubClient): LocalEngine {
    if (client.gone || !this.loaded) throw new Error('This engine was unloaded: create a new one.');
    return this.loaded;
  }

  /** Forget `client`'s conversation, after its queued requests. */
  reset(client: HubClient): Promise<void> {
    return this.run(client, async () => { client.hasState = false; }, true);
  }

  /** Stop `client`'s request in progress (not another client's). */
  async interrupt(client: HubClient): Promise<void> {
    if (this.running === client) await (await this.engine!).interrupt();
  }

  /** Disconnect `client`: its request in progress stops, its queued ones fail; the last client unloads the model. */
  async leave(client: HubClient): Promise<void> {
    if (client.gone) return;
    client.gone = true;
    for (const job of client.jobs.splice(0)) job.reject(new Error('This engine was unloaded: create a new one.'));
    client.parked = undefined;
    if (this.running === client) await this.interrupt(client);
    this.remove(client);
    if (this.clients.length || !this.engine) return;
    const engine = this.engine;
    this.engine = undefined;
    this.loaded = undefined;
    this.fill = undefined;
    this.owner = undefined;
    this.unloading = engine.then((e) => e.unload(), () => {});
    await this.unloading;
    this.unloading = undefined;
  }

  private remove(client: HubClient): void {
    const i = this.clients.indexOf(client);
    if (i < 0) return;
    this.clients.splice(i, 1);
    if (i <= this.last) this.last--;
  }

  /** Start the next job, if none is running: the first client after the last one served that has a job. */
  private async next(): Promise<void> {
    if (this.running) return;
    const n = this.clients.length;
    let client: HubClient | undefined;
    for (let k = 1; k <= n && !client; k++) {
      const c = this.clients[(this.last + k) % n];
      if (c.jobs.length) client = c;
    }
    if (!client) return;
    this.last = this.clients.indexOf(client);
    this.running = client;
    const job = client.jobs.shift()!;
    try {
      const engine = await this.engine!;
      await this.switchTo(engine, client, job.fresh);
      client.hasState = true;
      job.resolve(await job.body(engine));
    } catch (e) {
      job.reject(e);
    } finally {
      this.running = undefined;
      void this.next();
    }
  }

  /** The GPU state to `client`'s conversation (or an empty one), the previous owner's saved first. */
  private async switchTo(engine: LocalEngine, client: HubClient, fresh: boolean): Promise<void> {
    if (this.owner === client && !fresh) return;
    const owner = this.owner;
    if (owner && owner !== client && !owner.gone && owner.hasState) owner.parked = await engine.saveSession();
    this.owner = client;
    const parked = client.parked;
    client.parked = undefined;
    if (parked && !fresh) {
      await engine.restoreSession(parked);
    } else {
      await engine.resetChat();
      client.hasState = false;
    }
  }
}
