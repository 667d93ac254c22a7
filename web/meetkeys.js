// The meeting's end-to-end keys on top of SFrame (sframe.js): which KID a
// sender uses, which base key a received KID belongs to, key rotation with
// an overlap, the codec bytes left in clear, and the safety code people
// compare. No clock is read here: every call that needs time takes `now`
// (milliseconds), so the Node tests step it.
//
// KID layout (64 bits): the key's epoch in the top 24 bits, a random
// 40-bit sender id below. Each page draws a fresh sender id when it
// starts, so a reload never reuses a (key, nonce) pair even though its
// counter starts again at 0; the epoch tells a receiver which base key
// to derive from without trying several.

import { AES_128_GCM_SHA256_128, SFrameError, SFrameKey, concat, decodeHeader } from './sframe.js';

export const SENDER_BITS = 40n;
const SENDER_MASK = (1n << SENDER_BITS) - 1n;
export const MAX_EPOCH = (1 << 24) - 1;
/** How long a replaced key still decrypts (frames in flight, slow senders). */
export const DEFAULT_OVERLAP_MS = 10_000;
/** KIDs of one epoch a receiver keeps derived keys for. */
const MAX_KIDS_PER_EPOCH = 256;

/** The KID of `sender` (40-bit BigInt) under key epoch `epoch`. */
export function kidOf(epoch, sender) {
  return (BigInt(epoch) << SENDER_BITS) | (sender & SENDER_MASK);
}

/** The key epoch a KID was sent under. */
export function epochOf(kid) {
  return Number(kid >> SENDER_BITS);
}

/** A fresh random 40-bit sender id. */
export function randomSender() {
  const b = crypto.getRandomValues(new Uint8Array(5));
  return b.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
}

/**
 * How many leading bytes of an encoded frame stay in clear, as LiveKit and
 * Jitsi do, so the relay and the receiver's depacketizer still read them:
 * Opus its TOC byte; VP8 its 3-byte frame tag, plus the start code and
 * size (10 bytes in all) on a keyframe (RFC 6386 §9.1: bit 0 of the first
 * byte is 0 on a keyframe).
 */
export function clearBytes(kind, data) {
  if (data.length === 0) return 0;
  if (kind === 'audio') return 1;
  const key = (data[0] & 0x01) === 0;
  return Math.min(data.length, key ? 10 : 3);
}

function decodeBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * The base key of the `key=` fragment parameter: base64url of 16 to 64
 * random bytes. Throws a sentence for a person otherwise.
 */
export function parseMeetingKey(text) {
  let bytes;
  try {
    bytes = decodeBase64Url(text);
  } catch {
    throw new SFrameError('bad-key', 'the meeting key in the link is not base64url');
  }
  if (bytes.length < 16 || bytes.length > 64) {
    throw new SFrameError('bad-key', `the meeting key must be 16 to 64 bytes, the link has ${bytes.length}`);
  }
  return bytes;
}

/**
 * The safety code of a base key: 15 digits in three groups, the first 50
 * bits of SHA-256("sluice meet safety code v1" || key). Everyone holding
 * the same key sees the same code; compare it out loud.
 */
export async function safetyCode(baseKey) {
  const label = new TextEncoder().encode('sluice meet safety code v1');
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', concat(label, baseKey)));
  const value = digest.subarray(0, 8).reduce((v, x) => (v << 8n) | BigInt(x), 0n) >> 14n;
  const digits = (value % 10n ** 15n).toString().padStart(15, '0');
  return `${digits.slice(0, 5)} ${digits.slice(5, 10)} ${digits.slice(10)}`;
}

/**
 * One participant's keys: the newest epoch encrypts, every epoch not yet
 * expired decrypts. Counters are taken synchronously, so audio and video
 * sharing one keyring never share a nonce.
 */
export class MeetingKeyring {
  constructor({ suite = AES_128_GCM_SHA256_128, overlapMs = DEFAULT_OVERLAP_MS, sender = randomSender() } = {}) {
    this.suite = suite;
    this.overlapMs = overlapMs;
    this.sender = sender & SENDER_MASK;
    /** epoch -> { baseKey, expiresAt (null while current), keys: Map<kid, Promise<SFrameKey>> } */
    this.epochs = new Map();
    this.current = null;
    this.counter = 0n;
    this.sendKey = null;
  }

  /**
   * Installs the base key of `epoch` and sends with it from now on; the
   * key it replaces decrypts for `overlapMs` more. An epoch older than
   * the current one is accepted for decryption only (a late delivery).
   */
  setKey(epoch, baseKey, now) {
    if (!Number.isInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) {
      throw new SFrameError('bad-key', `the key epoch must be an integer from 0 to ${MAX_EPOCH}`);
    }
    const known = this.epochs.get(epoch);
    if (known && bytesEqual(known.baseKey, baseKey)) return;
    this.epochs.set(epoch, { baseKey: Uint8Array.from(baseKey), expiresAt: null, keys: new Map() });
    if (this.current === null || epoch >= this.current) {
      for (const [e, entry] of this.epochs) {
        if (e !== epoch && entry.expiresAt === null) entry.expiresAt = now + this.overlapMs;
      }
      this.current = epoch;
      this.counter = 0n;
      this.sendKey = SFrameKey.derive(this.suite, kidOf(epoch, this.sender), baseKey);
    } else {
      this.epochs.get(epoch).expiresAt = now + this.overlapMs;
    }
  }

  /** Forgets epochs whose overlap ended. */
  expire(now) {
    for (const [e, entry] of this.epochs) {
      if (entry.expiresAt !== null && entry.expiresAt <= now) this.epochs.delete(e);
    }
  }

  /** The KID this participant sends with, or null before a key is set. */
  sendKid() {
    return this.current === null ? null : kidOf(this.current, this.sender);
  }

  /** Encrypts one frame body; `metadata` is authenticated in clear. */
  async seal(metadata, plaintext) {
    if (!this.sendKey) throw new SFrameError('no-key', 'no meeting key is set');
    const ctr = this.counter;
    this.counter += 1n;
    const key = await this.sendKey;
    return key.encrypt(ctr, metadata, plaintext);
  }

  /** Decrypts one SFrame ciphertext or rejects with an SFrameError. */
  async open(metadata, sframe, now) {
    this.expire(now);
    const header = decodeHeader(sframe);
    const entry = this.epochs.get(epochOf(header.kid));
    if (!entry) throw new SFrameError('unknown-key', `no key for epoch ${epochOf(header.kid)}`);
    let key = entry.keys.get(header.kid);
    if (!key) {
      if (entry.keys.size >= MAX_KIDS_PER_EPOCH) entry.keys.delete(entry.keys.keys().next().value);
      key = SFrameKey.derive(this.suite, header.kid, entry.baseKey);
      entry.keys.set(header.kid, key);
    }
    return (await key).decrypt(metadata, sframe, header);
  }

  /** One encoded media frame out: clear codec bytes, then the SFrame ciphertext. */
  async sealFrame(kind, data) {
    const n = clearBytes(kind, data);
    const clear = data.subarray(0, n);
    return concat(clear, await this.seal(clear, data.subarray(n)));
  }

  /** One encoded media frame in: the codec's original bytes, or an SFrameError. */
  async openFrame(kind, data, now) {
    const n = clearBytes(kind, data);
    const clear = data.subarray(0, n);
    return concat(clear, await this.open(clear, data.subarray(n), now));
  }
}

function bytesEqual(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
