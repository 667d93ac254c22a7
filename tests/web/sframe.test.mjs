// RFC 9605 Appendix C vectors for web/sframe.js, and the meeting keyring
// of web/meetkeys.js (KID layout, rotation with overlap, clear codec
// bytes, dropped frames). Run: node --test tests/web/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  AES_128_GCM_SHA256_128,
  AES_256_GCM_SHA512_128,
  SFrameKey,
  decodeHeader,
  deriveKeySalt,
  derivationLabels,
  encodeHeader,
  frameNonce,
} from '../../web/sframe.js';
import { MeetingKeyring, clearBytes, epochOf, kidOf, parseMeetingKey, safetyCode } from '../../web/meetkeys.js';

const hex = (s) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b) => Buffer.from(b).toString('hex');

// Appendix C.1: (kid, ctr, header), a sample of every KID and CTR length.
const HEADERS = [
  [0x0n, 0x0001000000000000n, '0e01000000000000'],
  [0x0n, 0x00ffffffffffffffn, '0effffffffffffff'],
  [0x0n, 0x0100000000000000n, '0f0100000000000000'],
  [0x0n, 0xffffffffffffffffn, '0fffffffffffffffff'],
  [0x1n, 0x0n, '10'],
  [0x1n, 0x1n, '11'],
  [0x1n, 0xffn, '18ff'],
  [0x1n, 0x100n, '190100'],
  [0x1n, 0xffffn, '19ffff'],
  [0x1n, 0x10000n, '1a010000'],
  [0x1n, 0xffffffn, '1affffff'],
  [0x1n, 0x1000000n, '1b01000000'],
  [0x1n, 0x100000000n, '1c0100000000'],
  [0x1n, 0x10000000000n, '1d010000000000'],
  [0xffn, 0x0n, '80ff'],
  [0xffn, 0x1n, '81ff'],
  [0xffn, 0xffn, '88ffff'],
  [0xffn, 0x100n, '89ff0100'],
  [0xffn, 0xffffffffffffffffn, '8fffffffffffffffffff'],
  [0x100n, 0x0n, '900100'],
  [0x100n, 0xffn, '980100ff'],
  [0x100n, 0x100n, '9901000100'],
  [0xffffn, 0xffffffffn, '9bffffffffffff'],
  [0x10000n, 0x0n, 'a0010000'],
  [0x10000n, 0x1000000n, 'ab01000001000000'],
  [0xffffffn, 0xffn, 'a8ffffffff'],
  [0x1000000n, 0x0n, 'b001000000'],
  [0x1000000n, 0x0100000000000000n, 'bf010000000100000000000000'],
  [0xffffffffn, 0x10000n, 'baffffffff010000'],
  [0x100000000n, 0x0n, 'c00100000000'],
  [0x100000000n, 0xffffffffffffffffn, 'cf0100000000ffffffffffffffff'],
  [0xffffffffffn, 0x100n, 'c9ffffffffff0100'],
  [0x10000000000n, 0x0n, 'd0010000000000'],
  [0xffffffffffffn, 0x1000000n, 'dbffffffffffff01000000'],
  [0x1000000000000n, 0xffn, 'e801000000000000ff'],
  [0x00ffffffffffffffn, 0x0n, 'e0ffffffffffffff'],
  [0x00ffffffffffffffn, 0x1n, 'e1ffffffffffffff'],
  [0x00ffffffffffffffn, 0x10000n, 'eaffffffffffffff010000'],
  [0x0100000000000000n, 0x0n, 'f00100000000000000'],
  [0x0100000000000000n, 0x0100000000000000n, 'ff01000000000000000100000000000000'],
  [0xffffffffffffffffn, 0x0n, 'f0ffffffffffffffff'],
  [0xffffffffffffffffn, 0xffn, 'f8ffffffffffffffffff'],
  [0xffffffffffffffffn, 0xffffffffffffffffn, 'ffffffffffffffffffffffffffffffffff'],
];

test('the header encodes and decodes as in RFC 9605 C.1', () => {
  for (const [kid, ctr, expected] of HEADERS) {
    assert.equal(toHex(encodeHeader(kid, ctr)), expected, `kid ${kid} ctr ${ctr}`);
    const bytes = hex(expected + 'abcdef');
    assert.deepEqual(decodeHeader(bytes), { kid, ctr, length: expected.length / 2 });
  }
});

test('a header cut short is refused, never read past its end', () => {
  assert.throws(() => decodeHeader(new Uint8Array(0)), { code: 'short' });
  assert.throws(() => decodeHeader(hex('99 01')), { code: 'short' });
  assert.throws(() => decodeHeader(hex('99 0123 45')), { code: 'short' });
  assert.throws(() => encodeHeader(1n << 64n, 0n), { code: 'range' });
  assert.throws(() => encodeHeader(-1n, 0n), { code: 'range' });
});

// Appendix C.3, the two AES-GCM suites.
const SFRAME = [
  {
    suite: AES_128_GCM_SHA256_128,
    keyLabel: '534672616d6520312e3020536563726574206b65792000000000000001230004',
    saltLabel: '534672616d6520312e30205365637265742073616c742000000000000001230004',
    sframeKey: 'd34f547f4ca4f9a7447006fe7fcbf768',
    sframeSalt: '75234edefe07819026751816',
    nonce: '75234edefe07819026755d71',
    ct: '9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb',
  },
  {
    suite: AES_256_GCM_SHA512_128,
    keyLabel: '534672616d6520312e3020536563726574206b65792000000000000001230005',
    saltLabel: '534672616d6520312e30205365637265742073616c742000000000000001230005',
    sframeKey: 'd3e27b0d4a5ae9e55df01a70e6d4d28d969b246e2936f4b7a5d9b494da6b9633',
    sframeSalt: '84991c167b8cd23c93708ec7',
    nonce: '84991c167b8cd23c9370cba0',
    ct: '990123456794f509d36e9beacb0e261d99c7d1e972f1fed787d4049f17ca21353c1cc24d56ceabced279',
  },
];
const KID = 0x0123n;
const CTR = 0x4567n;
const BASE_KEY = hex('000102030405060708090a0b0c0d0e0f');
const METADATA = hex('4945544620534672616d65205747');
const PLAINTEXT = hex('64726166742d696574662d736672616d652d656e63');

for (const v of SFRAME) {
  test(`suite 0x000${v.suite}: labels, key, salt, nonce and ciphertext as in RFC 9605 C.3`, async () => {
    const labels = derivationLabels(v.suite, KID);
    assert.equal(toHex(labels.key), v.keyLabel);
    assert.equal(toHex(labels.salt), v.saltLabel);
    const { key, salt } = await deriveKeySalt(v.suite, KID, BASE_KEY);
    assert.equal(toHex(key), v.sframeKey);
    assert.equal(toHex(salt), v.sframeSalt);
    assert.equal(toHex(frameNonce(salt, CTR)), v.nonce);
    const sframeKey = await SFrameKey.derive(v.suite, KID, BASE_KEY);
    assert.equal(toHex(await sframeKey.encrypt(CTR, METADATA, PLAINTEXT)), v.ct);
    assert.equal(toHex(await sframeKey.decrypt(METADATA, hex(v.ct))), toHex(PLAINTEXT));
  });

  test(`suite 0x000${v.suite}: a changed byte anywhere fails to authenticate`, async () => {
    const sframeKey = await SFrameKey.derive(v.suite, KID, BASE_KEY);
    const ct = hex(v.ct);
    for (const at of [5, 6, ct.length - 1]) {
      const bad = Uint8Array.from(ct);
      bad[at] ^= 0x01;
      await assert.rejects(sframeKey.decrypt(METADATA, bad), { code: 'auth' });
    }
    const otherMetadata = Uint8Array.from(METADATA);
    otherMetadata[0] ^= 0x80;
    await assert.rejects(sframeKey.decrypt(otherMetadata, ct), { code: 'auth' });
    const header = Uint8Array.from(ct);
    header[4] ^= 0x01; // the counter: another nonce
    await assert.rejects(sframeKey.decrypt(METADATA, header), { code: 'auth' });
  });
}

const KEY_A = new Uint8Array(32).fill(0xa1);
const KEY_B = new Uint8Array(32).fill(0xb2);
const VP8_KEY = Uint8Array.from([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0x11, 0x22, 0x33, 0x44]);
const VP8_DELTA = Uint8Array.from([0x31, 0x02, 0x00, 0x55, 0x66, 0x77, 0x88]);
const OPUS = Uint8Array.from([0x78, 0x01, 0x02, 0x03, 0x04]);

test('clear bytes: VP8 10 on a keyframe, 3 otherwise; Opus its TOC byte', () => {
  assert.equal(clearBytes('video', VP8_KEY), 10);
  assert.equal(clearBytes('video', VP8_DELTA), 3);
  assert.equal(clearBytes('audio', OPUS), 1);
  assert.equal(clearBytes('audio', new Uint8Array(0)), 0);
});

test('a sealed frame keeps the codec bytes, hides the rest, and opens with the same key', async () => {
  const alice = new MeetingKeyring({ sender: 0x1234567890n });
  const bob = new MeetingKeyring();
  alice.setKey(1, KEY_A, 0);
  bob.setKey(1, KEY_A, 0);
  for (const [kind, frame, clear] of [['video', VP8_KEY, 10], ['video', VP8_DELTA, 3], ['audio', OPUS, 1]]) {
    const sealed = await alice.sealFrame(kind, frame);
    assert.deepEqual(sealed.subarray(0, clear), frame.subarray(0, clear));
    const header = decodeHeader(sealed.subarray(clear));
    assert.equal(header.kid, kidOf(1, 0x1234567890n));
    assert.equal(epochOf(header.kid), 1);
    const body = sealed.subarray(clear + header.length);
    assert.equal(body.length, frame.length - clear + 16);
    assert.notDeepEqual(body.subarray(0, frame.length - clear), frame.subarray(clear));
    assert.deepEqual(await bob.openFrame(kind, sealed, 0), frame);
  }
});

test('each frame takes the next counter, audio and video alike', async () => {
  const alice = new MeetingKeyring();
  alice.setKey(0, KEY_A, 0);
  const ctrs = [];
  for (const frame of [OPUS, VP8_DELTA, OPUS]) {
    const kind = frame === OPUS ? 'audio' : 'video';
    const sealed = await alice.sealFrame(kind, frame);
    ctrs.push(decodeHeader(sealed.subarray(clearBytes(kind, frame))).ctr);
  }
  assert.deepEqual(ctrs, [0n, 1n, 2n]);
  const again = await Promise.all([alice.seal(OPUS, OPUS), alice.seal(OPUS, OPUS)]);
  assert.deepEqual(again.map((s) => decodeHeader(s).ctr), [3n, 4n]);
});

test('a wrong key, a changed clear byte or an unknown epoch drops the frame', async () => {
  const alice = new MeetingKeyring();
  const mallory = new MeetingKeyring();
  alice.setKey(1, KEY_A, 0);
  mallory.setKey(1, KEY_B, 0);
  const sealed = await alice.sealFrame('video', VP8_KEY);
  await assert.rejects(mallory.openFrame('video', sealed, 0), { code: 'auth' });
  const forged = Uint8Array.from(sealed);
  forged[6] ^= 0x01; // a clear size byte: authenticated as metadata
  const bob = new MeetingKeyring();
  bob.setKey(1, KEY_A, 0);
  await assert.rejects(bob.openFrame('video', forged, 0), { code: 'auth' });
  const stranger = new MeetingKeyring();
  stranger.setKey(7, KEY_A, 0);
  await assert.rejects(stranger.openFrame('video', sealed, 0), { code: 'unknown-key' });
});

test('rotation: the new key sends at once, the old one opens for the overlap only', async () => {
  const alice = new MeetingKeyring({ overlapMs: 5000 });
  const bob = new MeetingKeyring({ overlapMs: 5000 });
  alice.setKey(1, KEY_A, 0);
  bob.setKey(1, KEY_A, 0);
  const old = await alice.sealFrame('audio', OPUS);
  alice.setKey(2, KEY_B, 1000);
  bob.setKey(2, KEY_B, 1000);
  const fresh = await alice.sealFrame('audio', OPUS);
  assert.equal(epochOf(decodeHeader(fresh.subarray(1)).kid), 2);
  assert.equal(decodeHeader(fresh.subarray(1)).ctr, 0n);
  assert.deepEqual(await bob.openFrame('audio', old, 5999), OPUS);
  assert.deepEqual(await bob.openFrame('audio', fresh, 5999), OPUS);
  await assert.rejects(bob.openFrame('audio', old, 6000), { code: 'unknown-key' });
  assert.deepEqual(await bob.openFrame('audio', fresh, 60_000), OPUS);
  // A late delivery of an older epoch decrypts but never sends.
  const carol = new MeetingKeyring();
  carol.setKey(2, KEY_B, 0);
  carol.setKey(1, KEY_A, 0);
  assert.equal(epochOf(carol.sendKid()), 2);
  assert.deepEqual(await carol.openFrame('audio', old, 1), OPUS);
});

test('the safety code depends on the key only, and the link key is checked', async () => {
  const a = await safetyCode(KEY_A);
  assert.match(a, /^\d{5} \d{5} \d{5}$/);
  assert.equal(a, await safetyCode(Uint8Array.from(KEY_A)));
  assert.notEqual(a, await safetyCode(KEY_B));
  assert.deepEqual(parseMeetingKey(Buffer.from(KEY_A).toString('base64url')), KEY_A);
  assert.throws(() => parseMeetingKey('c2hvcnQ'), { code: 'bad-key' });
  assert.throws(() => parseMeetingKey('not base64 at all!'), { code: 'bad-key' });
});
