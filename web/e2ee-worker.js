// The RTCRtpScriptTransform worker of an E2EE meeting: every encoded frame
// a sender produces is sealed with SFrame before it is packetized, every
// frame a receiver assembles is opened before it is decoded. A frame that
// does not authenticate, or that arrives before a key, is dropped: never
// shown, never played. Nothing leaves unencrypted once a transform is on.
//
// Messages from the page: {type:'key', epoch, key} installs a base key;
// {type:'stats', id} answers {type:'stats', id, stats}; {type:'probe',
// frames} records the next frames' bytes before and after sealing (the
// tests' sender-side hook), {type:'probe-inbound', frames} the next
// received frames as they arrived, before opening (what the relay
// forwarded); {type:'probe-read', id} answers both.

import { MeetingKeyring, clearBytes } from './meetkeys.js';

const keyring = new MeetingKeyring();
const stats = {
  encrypted: { audio: 0, video: 0 },
  decrypted: { audio: 0, video: 0 },
  dropped: { audio: 0, video: 0 },
  noKey: 0,
  lastError: null,
};
let probe = null;
let inbound = null;

self.onmessage = (event) => {
  const m = event.data;
  if (m.type === 'key') {
    try {
      keyring.setKey(m.epoch, new Uint8Array(m.key), Date.now());
    } catch (e) {
      stats.lastError = String(e.message);
    }
  } else if (m.type === 'stats') {
    const kid = keyring.sendKid();
    self.postMessage({ type: 'stats', id: m.id, stats: { ...stats, kid: kid === null ? null : kid.toString(16) } });
  } else if (m.type === 'probe') {
    probe = { left: m.frames, samples: [] };
  } else if (m.type === 'probe-inbound') {
    inbound = { left: m.frames, samples: [] };
  } else if (m.type === 'probe-read') {
    const samples = { sent: probe ? probe.samples : [], received: inbound ? inbound.samples : [] };
    self.postMessage({ type: 'probe', id: m.id, samples });
  }
};

function record(kind, plain, sealed) {
  if (!probe || probe.left <= 0) return;
  probe.left -= 1;
  const n = clearBytes(kind, plain);
  probe.samples.push({ kind, clear: n, plain: Array.from(plain.subarray(0, 256)), sealed: Array.from(sealed.subarray(0, 256)) });
}

async function encrypt(kind, frame, controller) {
  const data = new Uint8Array(frame.data);
  if (data.length === 0) {
    controller.enqueue(frame);
    return;
  }
  if (keyring.sendKid() === null) {
    stats.noKey += 1;
    return;
  }
  const sealed = await keyring.sealFrame(kind, data);
  record(kind, data, sealed);
  frame.data = sealed.buffer;
  stats.encrypted[kind] += 1;
  controller.enqueue(frame);
}

async function decrypt(kind, frame, controller) {
  if (inbound && inbound.left > 0) {
    inbound.left -= 1;
    inbound.samples.push({ kind, received: Array.from(new Uint8Array(frame.data).subarray(0, 256)) });
  }
  try {
    const opened = await keyring.openFrame(kind, new Uint8Array(frame.data), Date.now());
    frame.data = opened.buffer;
    stats.decrypted[kind] += 1;
    controller.enqueue(frame);
  } catch (e) {
    stats.dropped[kind] += 1;
    stats.lastError = e.code ?? String(e);
  }
}

self.onrtctransform = (event) => {
  const transformer = event.transformer;
  const { operation, kind } = transformer.options;
  const step = operation === 'encrypt' ? encrypt : decrypt;
  transformer.readable
    .pipeThrough(new TransformStream({ transform: (frame, controller) => step(kind, frame, controller) }))
    .pipeTo(transformer.writable)
    .catch((e) => {
      stats.lastError = String(e);
    });
};
