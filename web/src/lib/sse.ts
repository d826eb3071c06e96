// Server-Sent Event streams with named JSON events. EventSource reconnects by itself with
// Last-Event-ID after a dropped connection; when it gives up (an error status), this reopens
// with `last_event_id` in the query, after asking the owner whether to.

export interface StreamOptions {
  /** The URL to open, resuming after `lastEventId` when there is one. */
  url: (lastEventId: string | null) => string;
  events: readonly string[];
  onEvent: (name: string, data: unknown, id: string | null) => void;
  onOpen?: () => void;
  /** The connection dropped and EventSource retries by itself. */
  onRetrying?: () => void;
  /** EventSource gave up. Resolve true to reopen, false to stay closed. */
  onClosed?: () => Promise<boolean> | boolean;
  lastEventId?: string | null;
  EventSourceImpl?: typeof EventSource;
}

export class LiveStream {
  private source: EventSource | null = null;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  lastEventId: string | null;

  constructor(private readonly options: StreamOptions) {
    this.lastEventId = options.lastEventId ?? null;
    this.open();
  }

  private open(): void {
    if (this.stopped) return;
    const Impl = this.options.EventSourceImpl ?? EventSource;
    const source = new Impl(this.options.url(this.lastEventId));
    this.source = source;
    source.onopen = () => {
      this.failures = 0;
      this.options.onOpen?.();
    };
    for (const name of this.options.events) {
      source.addEventListener(name, (e) => {
        const message = e as MessageEvent<string>;
        if (message.lastEventId) this.lastEventId = message.lastEventId;
        let data: unknown = null;
        try {
          data = message.data ? JSON.parse(message.data) : null;
        } catch {
          data = message.data;
        }
        this.options.onEvent(name, data, message.lastEventId || null);
      });
    }
    source.onerror = () => {
      if (this.stopped) return;
      if (source.readyState === source.CLOSED) {
        source.close();
        void this.closed();
      } else {
        this.options.onRetrying?.();
      }
    };
  }

  private async closed(): Promise<void> {
    this.failures += 1;
    let again = true;
    try {
      again = (await this.options.onClosed?.()) ?? true;
    } catch {
      again = true;
    }
    if (!again || this.stopped) return;
    const delay = Math.min(15_000, 1000 * 2 ** Math.min(this.failures - 1, 4));
    this.timer = setTimeout(() => this.open(), delay);
  }

  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
  }
}
