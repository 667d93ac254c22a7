// The meeting page: publishes camera and microphone with WHIP, plays the
// meeting's slots with WHEP, and in an E2EE meeting encrypts and decrypts
// every frame with SFrame (e2ee.js). Everything it needs comes from the
// URL fragment, which the browser never sends to a server:
//
//   /meet#token=…&whip=…&whep=…[&name=…][&key=…&epoch=…][&slots=…]
//
// `key` (base64url, 16 to 64 bytes) makes the meeting end-to-end
// encrypted on this page; a new `key`/`epoch` in the fragment (the
// integrator's page changes it when someone leaves) rotates the key
// without rejoining.

import { E2ee, e2eeSupported } from './e2ee.js';
import { parseMeetingKey, safetyCode } from './meetkeys.js';
import { JoinError, endSession, negotiate } from './whip.js';

const MESSAGES = {
  link: 'This meeting link is incomplete: it needs token, whip and whep in the part after #. Ask whoever invited you for the full link.',
  token: 'Your invitation was refused: the token in the link is not valid (it may have expired or belong to another meeting). Ask the organiser for a new link.',
  locked: 'The meeting is locked. The host has to unlock it before you can join; press Try again then.',
  gone: 'This meeting does not exist any more. Ask the organiser for a new link.',
  refused: 'The relay refused to let you in with this link. Ask the organiser for a new one.',
  busy: 'The relay is full right now. Press Try again in a minute.',
  offer: 'The relay could not accept this browser’s media offer. Try a current Chrome, Edge, Firefox or Safari.',
  server: 'The relay answered with an error. Press Try again; if it persists, tell the organiser.',
  network: 'The relay cannot be reached. Check your network connection and press Try again.',
  'camera-denied': 'Camera and microphone access was denied. Allow both for this page (the camera icon in the address bar), then press Try again.',
  'no-devices': 'No camera or microphone was found. Connect one and press Try again.',
  'device-busy': 'The camera or microphone is in use by another application. Close it and press Try again.',
  'e2ee-unsupported': 'This meeting is end-to-end encrypted, but this browser cannot encrypt media frames. Use a current Chrome, Edge or Safari.',
  'no-key': 'This meeting is end-to-end encrypted, but the link carries no key. Ask the organiser for the full link.',
  'bad-key': 'The meeting key in the link is damaged. Ask the organiser for the link again.',
  lost: 'The connection to the relay was lost and could not be restored. Press Try again.',
  'wrong-key': 'Other participants’ media cannot be decrypted: your meeting key differs from theirs. Compare the safety code with them and ask the organiser for the right link.',
  left: 'You left the meeting.',
};
const RETRYABLE = new Set(['locked', 'busy', 'server', 'network', 'camera-denied', 'no-devices', 'device-busy', 'lost', 'left', 'offer']);
const MAX_RECONNECTS = 10;
const DISCONNECTED_GRACE_MS = 3000;
const SPEAKING_LEVEL = 0.03;
const DEFAULT_SLOTS = 3;

const $ = (id) => document.getElementById(id);
const meet = { phase: 'starting', reason: null, params: null, local: null, e2ee: null, publish: null, view: null, tiles: new Map(), attempt: 0, epoch: null, keyText: null, safety: null };

function parseFragment() {
  const p = new URLSearchParams(location.hash.slice(1));
  const base = location.href;
  const abs = (v) => (v ? new URL(v, base).href : null);
  const slots = Math.min(Math.max(parseInt(p.get('slots') ?? '', 10) || DEFAULT_SLOTS, 1), 9);
  return {
    token: p.get('token'),
    whip: abs(p.get('whip')),
    whep: abs(p.get('whep')),
    name: p.get('name') || 'You',
    key: p.get('key'),
    epoch: parseInt(p.get('epoch') ?? '0', 10) || 0,
    e2ee: p.has('key') || p.get('mode') === 'e2ee',
    slots,
  };
}

function setStatus(text) {
  $('status').textContent = text;
}

function showNotice(reason, { info = false, extra = '' } = {}) {
  meet.reason = reason;
  $('notice-text').textContent = MESSAGES[reason] + (extra ? ` ${extra}` : '');
  $('notice').classList.toggle('info', info);
  $('notice').hidden = false;
  $('notice-retry').hidden = !RETRYABLE.has(reason);
  $('notice-retry').textContent = reason === 'left' ? 'Rejoin' : 'Try again';
}

function clearNotice() {
  meet.reason = null;
  $('notice').hidden = true;
}

function tile(id, name, self = false) {
  let t = meet.tiles.get(id);
  if (!t) {
    const el = $('tile').content.firstElementChild.cloneNode(true);
    el.classList.toggle('self', self);
    el.querySelector('.name').textContent = name;
    el.dataset.name = name;
    const video = el.querySelector('video');
    video.muted = self;
    t = { el, video, stream: new MediaStream(), name, self };
    video.srcObject = t.stream;
    meet.tiles.set(id, t);
    $('grid').append(el);
  }
  return t;
}

async function openDevices() {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  } catch (e) {
    if (e.name === 'NotAllowedError' || e.name === 'SecurityError') throw new JoinError('camera-denied', e.message);
    if (e.name === 'NotFoundError' || e.name === 'OverconstrainedError') throw new JoinError('no-devices', e.message);
    if (e.name === 'NotReadableError' || e.name === 'AbortError') throw new JoinError('device-busy', e.message);
    throw new JoinError('no-devices', `${e.name}: ${e.message}`);
  }
}

function preferVp8(transceiver) {
  const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  if (vp8.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences(vp8);
}

function newPeer() {
  return new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
}

async function publish() {
  const pc = newPeer();
  for (const track of meet.local.getTracks()) {
    const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [meet.local] });
    if (track.kind === 'video') preferVp8(tr);
    if (meet.e2ee) meet.e2ee.attachSender(tr.sender, track.kind);
  }
  const session = { pc, location: null };
  meet.publish = session;
  session.location = await negotiate(pc, meet.params.whip, meet.params.token);
  return session;
}

async function view() {
  const pc = newPeer();
  const session = { pc, location: null };
  meet.view = session;
  for (let i = 0; i < meet.params.slots; i++) {
    for (const kind of ['audio', 'video']) {
      const tr = pc.addTransceiver(kind, { direction: 'recvonly' });
      if (kind === 'video') preferVp8(tr);
      if (meet.e2ee) meet.e2ee.attachReceiver(tr.receiver, kind);
    }
  }
  // Audio slot i and video slot i make tile i; a slot nobody fills stays
  // muted and its tile hidden. Who fills a slot comes from GET on the
  // WHEP session (names()); until then, and for a slot nobody fills, the
  // tile is "Guest i".
  pc.ontrack = (event) => {
    const kind = event.track.kind;
    const index = pc.getTransceivers().filter((t) => t.receiver.track.kind === kind).indexOf(event.transceiver);
    const t = tile(`slot:${index}`, `Guest ${index + 1}`);
    t.guest = `Guest ${index + 1}`;
    t.mids = { ...t.mids, [kind]: event.transceiver.mid };
    t.stream.addTrack(event.track);
    const refresh = () => {
      t.el.hidden = t.stream.getVideoTracks().every((track) => track.muted) && t.stream.getAudioTracks().every((track) => track.muted);
    };
    event.track.onmute = refresh;
    event.track.onunmute = refresh;
    refresh();
  };
  session.location = await negotiate(pc, meet.params.whep, meet.params.token);
  return session;
}

function watch(session) {
  let timer = null;
  session.pc.onconnectionstatechange = () => {
    const state = session.pc.connectionState;
    clearTimeout(timer);
    if (state === 'failed') reconnect();
    else if (state === 'disconnected') timer = setTimeout(reconnect, DISCONNECTED_GRACE_MS);
    else if (state === 'connected' && meet.phase === 'joined') setStatus('Connected');
  };
}

function teardown() {
  for (const s of [meet.publish, meet.view]) {
    if (!s) continue;
    s.pc.onconnectionstatechange = null;
    s.pc.close();
    endSession(s.location, meet.params.token);
  }
  meet.publish = null;
  meet.view = null;
  for (const [id, t] of meet.tiles) {
    if (!t.self) {
      t.el.remove();
      meet.tiles.delete(id);
    }
  }
}

async function connect() {
  meet.phase = 'connecting';
  setStatus(meet.attempt ? `Reconnecting (attempt ${meet.attempt} of ${MAX_RECONNECTS})…` : 'Connecting…');
  try {
    const sessions = await Promise.all([publish(), view()]);
    sessions.forEach(watch);
    meet.phase = 'joined';
    meet.attempt = 0;
    clearNotice();
    setStatus('Connected');
  } catch (e) {
    teardown();
    const reason = e instanceof JoinError ? e.reason : 'server';
    if (meet.attempt && ['network', 'server', 'busy'].includes(reason)) return reconnect();
    meet.phase = 'failed';
    showNotice(reason);
    setStatus('Not connected');
    console.warn('sluice meet: join failed', e);
  }
}

function reconnect() {
  if (meet.phase === 'left' || meet.phase === 'reconnecting') return;
  teardown();
  meet.attempt += 1;
  if (meet.attempt > MAX_RECONNECTS) {
    meet.phase = 'failed';
    meet.attempt = 0;
    showNotice('lost');
    setStatus('Not connected');
    return;
  }
  meet.phase = 'reconnecting';
  setStatus(`Connection lost. Reconnecting (attempt ${meet.attempt} of ${MAX_RECONNECTS})…`);
  setTimeout(connect, Math.min(1000 * 2 ** (meet.attempt - 1), 10_000));
}

async function applyKey(params) {
  if (!params.e2ee) return;
  if (!params.key) throw new JoinError('no-key', 'no key in the link');
  if (params.key === meet.keyText && params.epoch === meet.epoch) return;
  let key;
  try {
    key = parseMeetingKey(params.key);
  } catch (e) {
    throw new JoinError('bad-key', e.message);
  }
  meet.e2ee.setKey(params.epoch, key);
  const rotated = meet.keyText !== null;
  meet.keyText = params.key;
  meet.epoch = params.epoch;
  meet.safety = await safetyCode(key);
  $('safety-code').textContent = meet.safety;
  $('safety').hidden = false;
  if (rotated) setStatus('Meeting key rotated: compare the new safety code');
}

async function start() {
  clearNotice();
  meet.params = parseFragment();
  const p = meet.params;
  try {
    if (!p.token || !p.whip || !p.whep) throw new JoinError('link', 'missing token, whip or whep');
    $('mode').hidden = false;
    $('mode').textContent = p.e2ee ? 'End-to-end encrypted' : 'Standard meeting';
    $('mode').classList.toggle('e2ee', p.e2ee);
    if (p.e2ee) {
      if (!e2eeSupported()) throw new JoinError('e2ee-unsupported', 'no RTCRtpScriptTransform');
      meet.e2ee ??= new E2ee();
      await applyKey(p);
    }
    if (!meet.local) {
      setStatus('Asking for camera and microphone…');
      meet.local = await openDevices();
      const self = tile('self', `${p.name} (you)`, true);
      meet.local.getTracks().forEach((track) => self.stream.addTrack(track));
    }
  } catch (e) {
    meet.phase = 'failed';
    showNotice(e instanceof JoinError ? e.reason : 'server');
    setStatus('Not connected');
    return;
  }
  await connect();
}

function leave() {
  meet.phase = 'left';
  teardown();
  for (const track of meet.local?.getTracks() ?? []) track.stop();
  meet.local = null;
  meet.tiles.get('self')?.el.remove();
  meet.tiles.delete('self');
  showNotice('left', { info: true });
  setStatus('Not connected');
}

function toggle(kind, button, onText, offText) {
  const track = meet.local?.getTracks().find((t) => t.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  button.setAttribute('aria-pressed', String(!track.enabled));
  button.textContent = track.enabled ? onText : offText;
  if (kind === 'audio') meet.tiles.get('self').el.querySelector('.muted').hidden = track.enabled;
}

/** Marks who speaks: remote levels from the receivers, ours from the sender's media source. */
async function levels() {
  const byTrack = new Map();
  for (const r of meet.view?.pc.getReceivers() ?? []) {
    if (r.track.kind !== 'audio') continue;
    const level = r.getSynchronizationSources?.()[0]?.audioLevel ?? 0;
    byTrack.set(r.track.id, level);
  }
  if (meet.publish) {
    const stats = await meet.publish.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'media-source' && s.kind === 'audio' && meet.local) {
        const track = meet.local.getAudioTracks()[0];
        if (track) byTrack.set(track.id, track.enabled ? (s.audioLevel ?? 0) : 0);
      }
    });
  }
  for (const t of meet.tiles.values()) {
    const level = Math.max(0, ...t.stream.getAudioTracks().map((a) => byTrack.get(a.id) ?? 0));
    t.el.classList.toggle('speaking', level > SPEAKING_LEVEL);
    t.el.querySelector('.level').style.transform = `scaleY(${Math.min(1, 0.2 + level * 4)})`;
  }
}

/**
 * Names the slot tiles: the relay says who fills each WHEP slot (GET on
 * the session, with the participant's token). A tile shows the name of
 * whoever is in its video slot, else in its audio slot, else "Guest i".
 */
async function names() {
  const session = meet.view;
  if (!session?.location || meet.phase !== 'joined') return;
  const response = await fetch(session.location, { headers: { Authorization: `Bearer ${meet.params.token}` }, cache: 'no-store' });
  if (!response.ok) return;
  const { slots } = await response.json();
  const who = new Map(slots.map((s) => [s.mid, s.display_name]));
  for (const t of meet.tiles.values()) {
    if (t.self || !t.mids) continue;
    const name = who.get(t.mids.video) || who.get(t.mids.audio) || t.guest;
    if (name === t.name) continue;
    t.name = name;
    t.el.dataset.name = name;
    t.el.querySelector('.name').textContent = name;
  }
}

/** In an E2EE meeting: says so when others' frames keep failing to decrypt. */
let lastDecrypt = { ok: 0, bad: 0 };
async function keyCheck() {
  if (!meet.e2ee || meet.phase !== 'joined') return;
  const s = await meet.e2ee.stats();
  const ok = s.decrypted.audio + s.decrypted.video;
  const bad = s.dropped.audio + s.dropped.video;
  if (bad - lastDecrypt.bad > 10 && ok === lastDecrypt.ok) showNotice('wrong-key');
  else if (ok > lastDecrypt.ok && meet.reason === 'wrong-key') clearNotice();
  lastDecrypt = { ok, bad };
}

/** What the tests read: phase, notice, tiles and the decoder counters. */
async function report() {
  const sum = async (session, type, kind, field) => {
    if (!session) return 0;
    let n = 0;
    (await session.pc.getStats()).forEach((s) => {
      if (s.type === type && s.kind === kind) n += s[field] ?? 0;
    });
    return n;
  };
  return {
    phase: meet.phase,
    reason: meet.reason,
    notice: $('notice').hidden ? null : $('notice-text').textContent,
    safety: meet.safety,
    tiles: [...meet.tiles.values()].map((t) => ({
      name: t.name,
      self: t.self,
      hidden: t.el.hidden,
      speaking: t.el.classList.contains('speaking'),
      width: t.video.videoWidth,
      height: t.video.videoHeight,
    })),
    framesEncoded: await sum(meet.publish, 'outbound-rtp', 'video', 'framesEncoded'),
    framesDecoded: await sum(meet.view, 'inbound-rtp', 'video', 'framesDecoded'),
    audioSamples: await sum(meet.view, 'inbound-rtp', 'audio', 'totalSamplesReceived'),
    e2ee: meet.e2ee ? await meet.e2ee.stats() : null,
  };
}

window.sluiceMeet = { report, leave, get e2ee() { return meet.e2ee; } };

$('mic').onclick = () => toggle('audio', $('mic'), 'Mute microphone', 'Unmute microphone');
$('cam').onclick = () => toggle('video', $('cam'), 'Turn camera off', 'Turn camera on');
$('leave').onclick = leave;
$('notice-retry').onclick = () => {
  meet.attempt = 0;
  start();
};
window.addEventListener('hashchange', () => {
  const p = parseFragment();
  if (meet.e2ee && p.e2ee) applyKey(p).catch((e) => showNotice(e.reason ?? 'bad-key'));
});
window.addEventListener('pagehide', () => teardown());
setInterval(() => levels().catch(() => {}), 250);
setInterval(() => keyCheck().catch(() => {}), 2000);
setInterval(() => names().catch(() => {}), 1000);
start();
