// SFrame (RFC 9605) on WebCrypto: the header (§4.3), key derivation
// (§4.4.2) and AEAD encryption (§4.4.3, §4.4.4) for the AES-GCM cipher
// suites. It runs unchanged in a browser, in a worker and in Node (whose
// test runner checks it against the RFC's Appendix C vectors).
//
// KIDs and counters are BigInt: the header carries up to 64 bits of each.

/** AES_128_GCM_SHA256_128 (RFC 9605 §8.1). */
export const AES_128_GCM_SHA256_128 = 0x0004;
/** AES_256_GCM_SHA512_128 (RFC 9605 §8.1). */
export const AES_256_GCM_SHA512_128 = 0x0005;

const SUITES = new Map([
  [AES_128_GCM_SHA256_128, { hash: 'SHA-256', nk: 16, nn: 12, nt: 16 }],
  [AES_256_GCM_SHA512_128, { hash: 'SHA-512', nk: 32, nn: 12, nt: 16 }],
]);

const MAX_U64 = (1n << 64n) - 1n;

/** Why an SFrame operation failed; `code` says which way. */
export class SFrameError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'SFrameError';
    this.code = code;
  }
}

function suiteParams(suite) {
  const params = SUITES.get(suite);
  if (!params) throw new SFrameError('unknown-suite', `cipher suite 0x${suite.toString(16)} is not supported`);
  return params;
}

/** The minimal big-endian bytes of `value` (at least one byte). */
function minimalBytes(value) {
  const out = [];
  let v = value;
  do {
    out.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  return out;
}

function readUint(bytes, offset, length) {
  let v = 0n;
  for (let i = 0; i < length; i++) v = (v << 8n) | BigInt(bytes[offset + i]);
  return v;
}

function checkU64(name, value) {
  if (typeof value !== 'bigint' || value < 0n || value > MAX_U64) {
    throw new SFrameError('range', `${name} must be a BigInt between 0 and 2^64-1`);
  }
}

/**
 * The SFrame header of (kid, ctr) (RFC 9605 §4.3): one config byte
 * `X K K K Y C C C`; a value below 8 sits in its three bits, a larger one
 * follows in as few bytes as it needs (the bits then hold length - 1).
 */
export function encodeHeader(kid, ctr) {
  checkU64('KID', kid);
  checkU64('CTR', ctr);
  let config = 0;
  const tail = [];
  if (kid < 8n) {
    config |= Number(kid) << 4;
  } else {
    const b = minimalBytes(kid);
    config |= 0x80 | ((b.length - 1) << 4);
    tail.push(...b);
  }
  if (ctr < 8n) {
    config |= Number(ctr);
  } else {
    const b = minimalBytes(ctr);
    config |= 0x08 | (b.length - 1);
    tail.push(...b);
  }
  return Uint8Array.from([config, ...tail]);
}

/** Parses the header at the start of `bytes`: `{kid, ctr, length}`. */
export function decodeHeader(bytes) {
  if (bytes.length < 1) throw new SFrameError('short', 'an SFrame ciphertext needs at least a header byte');
  const config = bytes[0];
  let offset = 1;
  let kid;
  let ctr;
  if (config & 0x80) {
    const len = ((config >> 4) & 0x07) + 1;
    if (bytes.length < offset + len) throw new SFrameError('short', 'the SFrame header is cut inside the KID');
    kid = readUint(bytes, offset, len);
    offset += len;
  } else {
    kid = BigInt((config >> 4) & 0x07);
  }
  if (config & 0x08) {
    const len = (config & 0x07) + 1;
    if (bytes.length < offset + len) throw new SFrameError('short', 'the SFrame header is cut inside the counter');
    ctr = readUint(bytes, offset, len);
    offset += len;
  } else {
    ctr = BigInt(config & 0x07);
  }
  return { kid, ctr, length: offset };
}

function u64be(value) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The labels of RFC 9605 §4.4.2: "SFrame 1.0 Secret key " or "... salt "
 * followed by the KID as 8 bytes and the suite as 2 bytes, big-endian.
 */
export function derivationLabels(suite, kid) {
  checkU64('KID', kid);
  const tail = concat(u64be(kid), Uint8Array.from([suite >> 8, suite & 0xff]));
  const text = new TextEncoder();
  return {
    key: concat(text.encode('SFrame 1.0 Secret key '), tail),
    salt: concat(text.encode('SFrame 1.0 Secret salt '), tail),
  };
}

/**
 * `derive_key_salt(KID, base_key)` (RFC 9605 §4.4.2): HKDF with an empty
 * salt. Returns the raw `sframe_key` and `sframe_salt` bytes.
 */
export async function deriveKeySalt(suite, kid, baseKey) {
  const { hash, nk, nn } = suiteParams(suite);
  const labels = derivationLabels(suite, kid);
  const ikm = await crypto.subtle.importKey('raw', baseKey, 'HKDF', false, ['deriveBits']);
  const hkdf = (info, bytes) =>
    crypto.subtle.deriveBits({ name: 'HKDF', hash, salt: new Uint8Array(0), info }, ikm, bytes * 8);
  const [key, salt] = await Promise.all([hkdf(labels.key, nk), hkdf(labels.salt, nn)]);
  return { key: new Uint8Array(key), salt: new Uint8Array(salt) };
}

/** The nonce of counter `ctr`: the salt XOR the counter, right-aligned. */
export function frameNonce(salt, ctr) {
  const nonce = Uint8Array.from(salt);
  const c = u64be(ctr);
  for (let i = 0; i < 8; i++) nonce[nonce.length - 8 + i] ^= c[i];
  return nonce;
}

/**
 * One KID's sending or receiving state: the AES-GCM key and the salt.
 * Build it with {@link SFrameKey.derive}.
 */
export class SFrameKey {
  constructor(suite, kid, cryptoKey, salt) {
    this.suite = suite;
    this.kid = kid;
    this.cryptoKey = cryptoKey;
    this.salt = salt;
  }

  /** Derives the key and salt of `kid` from `baseKey` (raw bytes). */
  static async derive(suite, kid, baseKey) {
    const { key, salt } = await deriveKeySalt(suite, kid, baseKey);
    const cryptoKey = await crypto.subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']);
    return new SFrameKey(suite, kid, cryptoKey, salt);
  }

  /**
   * `encrypt(CTR, KID, metadata, plaintext)` (RFC 9605 §4.4.3): the
   * header followed by the AEAD ciphertext and tag. `metadata` is
   * authenticated, not carried.
   */
  async encrypt(ctr, metadata, plaintext) {
    const header = encodeHeader(this.kid, ctr);
    const { nt } = suiteParams(this.suite);
    const sealed = await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv: frameNonce(this.salt, ctr), additionalData: concat(header, metadata), tagLength: nt * 8 },
      this.cryptoKey,
      plaintext,
    );
    return concat(header, new Uint8Array(sealed));
  }

  /**
   * `decrypt(metadata, sframe_ciphertext)` (RFC 9605 §4.4.4) for a
   * ciphertext whose header names this key's KID; rejects with
   * SFrameError('auth') when it does not authenticate.
   */
  async decrypt(metadata, sframe, header = decodeHeader(sframe)) {
    if (header.kid !== this.kid) throw new SFrameError('kid', `the frame is for KID ${header.kid}, not ${this.kid}`);
    const { nt } = suiteParams(this.suite);
    const body = sframe.subarray(header.length);
    if (body.length < nt) throw new SFrameError('short', 'the SFrame ciphertext is shorter than its tag');
    try {
      const opened = await crypto.subtle.decrypt(
        {
          name: 'AES-GCM',
          iv: frameNonce(this.salt, header.ctr),
          additionalData: concat(sframe.subarray(0, header.length), metadata),
          tagLength: nt * 8,
        },
        this.cryptoKey,
        body,
      );
      return new Uint8Array(opened);
    } catch {
      throw new SFrameError('auth', 'the frame does not authenticate under its key');
    }
  }
}

export { concat };
