// Shared helpers of the WebRTC browser tests: Debian's /usr/bin/chromium,
// headless, with fake camera and microphone, driven by playwright-core.
// Each page is served (by playwright, not the network) at the API's own
// origin, so WHIP/WHEP are same-origin requests from a secure context
// (http://127.0.0.1 is one).

import { chromium } from 'playwright-core';

export const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';

const ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--allow-loopback-in-peer-connection',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

export async function launch() {
  return chromium.launch({ executablePath: EXECUTABLE, headless: true, args: ARGS, timeout: 30000 });
}

/** Closes a browser, bounded: Chromium's children may linger. */
export async function closeBrowser(browser) {
  await Promise.race([browser.close(), sleep(5000)]);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs in the page: publish (WHIP), view (WHEP), stats, close.
const PAGE_SCRIPT = `
window.sessions = [];
async function post(url, token, sdp) {
  const r = await fetch(url, { method: 'POST', headers: {
    'content-type': 'application/sdp', authorization: 'Bearer ' + token }, body: sdp });
  const text = await r.text();
  if (r.status !== 201) throw new Error('POST ' + url + ' answered ' + r.status + ': ' + text);
  return { location: r.headers.get('location'), sdp: text };
}
window.publish = async (whip, token, opts) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  // opts.tone (a gain, 0 for silence): a tone from WebAudio (opts.freq
  // Hz, 440 unless given) in place of the fake microphone, whose beeps
  // are too short to speak.
  const tone = opts.tone !== undefined;
  const media = await navigator.mediaDevices.getUserMedia({
    audio: opts.audio && !tone, video: opts.video ? { width: 320, height: 240, frameRate: 15 } : false });
  if (tone) {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = opts.freq || 440;
    const gain = ctx.createGain();
    gain.gain.value = opts.tone;
    const out = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(out);
    osc.start();
    media.addTrack(out.stream.getAudioTracks()[0]);
    window.toneContext = ctx;
  }
  for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
  await pc.setLocalDescription(await pc.createOffer());
  const answer = await post(whip, token, pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  window.sessions.push({ pc, location: answer.location, token, kind: 'whip' });
  return window.sessions.length - 1;
};
window.view = async (whep, token, opts) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (let i = 0; i < opts.audio; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
  for (let i = 0; i < opts.video; i++) {
    const t = pc.addTransceiver('video', { direction: 'recvonly' });
    // opts.codec ('VP8', 'H264'): the offer lists only that codec.
    if (opts.codec) t.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs
      .filter((c) => c.mimeType.toLowerCase() === 'video/' + opts.codec.toLowerCase()));
  }
  pc.ontrack = (e) => {
    const el = document.createElement(e.track.kind);
    el.muted = e.track.kind === 'video'; el.autoplay = true;
    el.srcObject = new MediaStream([e.track]);
    document.body.appendChild(el);
  };
  await pc.setLocalDescription(await pc.createOffer());
  const answer = await post(whep, token, pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  window.sessions.push({ pc, location: answer.location, token, kind: 'whep', answer: answer.sdp });
  return window.sessions.length - 1;
};
window.report = async () => {
  const out = [];
  for (const s of window.sessions) {
    const r = { kind: s.kind, state: s.pc.connectionState, inbound: [], outbound: [] };
    const stats = await s.pc.getStats();
    const codecs = new Map();
    stats.forEach((v) => { if (v.type === 'codec') codecs.set(v.id, v); });
    stats.forEach((v) => {
      const codec = codecs.get(v.codecId);
      if (v.type === 'inbound-rtp') r.inbound.push({ kind: v.kind, mid: v.mid, ssrc: v.ssrc,
        codec: codec && codec.mimeType, pt: codec && codec.payloadType,
        packets: v.packetsReceived || 0, frames: v.framesDecoded || 0,
        energy: v.totalAudioEnergy || 0, bytes: v.bytesReceived || 0 });
      if (v.type === 'outbound-rtp') r.outbound.push({ kind: v.kind, ssrc: v.ssrc, packets: v.packetsSent || 0,
        frames: v.framesEncoded || 0 });
      if (v.type === 'transport') { r.dtls = v.dtlsState; r.cipher = v.srtpCipher; }
    });
    r.inbound.sort((a, b) => (a.mid || '').localeCompare(b.mid || ''));
    out.push(r);
  }
  return out;
};
window.slots = async (i) => {
  const s = window.sessions[i];
  const r = await fetch(s.location, { headers: { authorization: 'Bearer ' + s.token } });
  return r.status === 200 ? (await r.json()).slots : { status: r.status };
};
window.closeSession = async (i) => {
  const s = window.sessions[i];
  const r = await fetch(s.location, { method: 'DELETE', headers: { authorization: 'Bearer ' + s.token } });
  s.pc.close();
  return r.status;
};
`;

/** A page at the API's origin with the helpers above loaded. */
export async function openPage(browser, api) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const url = api + '/__browser_test__';
  await page.route(url, (route) => route.fulfill({
    status: 200, contentType: 'text/html',
    body: '<!doctype html><html><body><script>' + PAGE_SCRIPT + '</script></body></html>',
  }));
  await page.goto(url);
  page.on('console', (m) => { if (m.type() === 'error') console.error('[page]', m.text()); });
  return page;
}

/** The control API, as the integrator calls it. */
export async function api(base, method, path, body) {
  const r = await fetch(base + path, {
    method, headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null, headers: r.headers };
}

export async function admitBrowser(base, meeting, name) {
  const r = await api(base, 'POST', `/v1/meetings/${meeting}/participants`, { name, transport: 'webrtc' });
  if (r.status !== 201) throw new Error(`admission answered ${r.status}: ${JSON.stringify(r.json)}`);
  const w = r.json.webrtc;
  return { id: r.json.id, token: w.token, whip: base + w.whip, whep: base + w.whep };
}

/** Polls `check(report)` every 250 ms until it returns true or `ms` pass. */
export async function until(page, ms, check) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await page.evaluate('report()');
    if (check(last)) return last;
    await sleep(250);
  }
  throw new Error('timed out; last report: ' + JSON.stringify(last));
}
