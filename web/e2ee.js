// The page's side of end-to-end encryption: one worker (e2ee-worker.js)
// holds the keys and runs the transforms of every sender and receiver.

/** Whether this browser can encrypt encoded frames (RTCRtpScriptTransform). */
export function e2eeSupported() {
  return typeof RTCRtpScriptTransform === 'function' && typeof Worker === 'function';
}

export class E2ee {
  constructor() {
    this.worker = new Worker(new URL('./e2ee-worker.js', import.meta.url), { type: 'module', name: 'sluice-e2ee' });
    this.pending = new Map();
    this.nextId = 1;
    this.worker.onmessage = (event) => {
      const resolve = this.pending.get(event.data.id);
      if (resolve) {
        this.pending.delete(event.data.id);
        resolve(event.data);
      }
    };
  }

  /** Installs the base key of `epoch` (raw bytes); it encrypts from now on. */
  setKey(epoch, key) {
    this.worker.postMessage({ type: 'key', epoch, key: Uint8Array.from(key).buffer });
  }

  /** Encrypts what `sender` sends (`kind`: 'audio' or 'video'). */
  attachSender(sender, kind) {
    sender.transform = new RTCRtpScriptTransform(this.worker, { operation: 'encrypt', kind });
  }

  /** Decrypts what `receiver` gets; frames that fail are dropped. */
  attachReceiver(receiver, kind) {
    receiver.transform = new RTCRtpScriptTransform(this.worker, { operation: 'decrypt', kind });
  }

  #ask(message) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.worker.postMessage({ ...message, id });
    });
  }

  /** Frames encrypted, decrypted and dropped, per kind. */
  async stats() {
    return (await this.#ask({ type: 'stats' })).stats;
  }

  /** Records the next `frames` sent frames before and after sealing. */
  probe(frames) {
    this.worker.postMessage({ type: 'probe', frames });
  }

  /** Records the next `frames` received frames before they are opened. */
  probeInbound(frames) {
    this.worker.postMessage({ type: 'probe-inbound', frames });
  }

  /**
   * The recorded frames (first 256 bytes of each): `sent` as
   * `{kind, clear, plain, sealed}`, `received` as `{kind, received}`.
   */
  async probeSamples() {
    return (await this.#ask({ type: 'probe-read' })).samples;
  }

  close() {
    this.worker.terminate();
  }
}
