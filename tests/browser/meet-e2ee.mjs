// The meeting page's end-to-end encryption in Chromium, without the relay:
// three pages of sluice's own /meet origin (its CSP in force) load the
// page's e2ee.js, whose worker seals every encoded frame with SFrame, and
// connect their RTCPeerConnections to each other directly on loopback.
// Ann and Bob hold the meeting key, Cat a wrong one.
//   - Ann <-> Bob decode each other's video at a sane frame rate and
//     picture (mean colour of the fake camera's pattern) and audio;
//   - Cat decodes nothing from Ann (every frame dropped by her
//     transform), Ann nothing from Cat;
//   - Ann's sender-side hook: the sent bytes after the clear codec bytes
//     differ from the encoded frame, the clear bytes are the codec's.
// Run by tests/meet_browser.rs inside `unshare --net` (only lo exists).
import { Checks, hardStop, launch, startSluice, until } from './meet-lib.mjs';

const KEY = Buffer.alloc(32, 7).toString('base64url');
const WRONG = Buffer.alloc(32, 9).toString('base64url');
const checks = new Checks();
let sluice = null;
let chromium = null;
const cleanup = async () => {
  await chromium?.close();
  await sluice?.stop();
};
hardStop(110_000, cleanup);

// Runs in the page: a participant of the direct mesh.
const participant = async ([key]) => {
  const { E2ee } = await import('/meet/e2ee.js');
  const { parseMeetingKey, safetyCode } = await import('/meet/meetkeys.js');
  const local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240, frameRate: 15 } });
  const e2ee = new E2ee();
  e2ee.setKey(1, parseMeetingKey(key));
  const gathered = (pc) =>
    new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const timer = setTimeout(resolve, 5000);
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && (clearTimeout(timer), resolve()));
    });
  const vp8 = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/VP8');
  const mean = (video) => {
    if (!video.videoWidth) return null;
    const canvas = document.createElement('canvas');
    canvas.width = 32;
    canvas.height = 24;
    const g = canvas.getContext('2d');
    g.drawImage(video, 0, 0, 32, 24);
    const d = g.getImageData(0, 0, 32, 24).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) for (let c = 0; c < 3; c++) sum[c] += d[i + c];
    return sum.map((s) => Math.round(s / (d.length / 4)));
  };
  const selfVideo = document.createElement('video');
  selfVideo.muted = true;
  selfVideo.srcObject = local;
  await selfVideo.play();
  const t = {
    outs: {},
    ins: {},
    videos: {},
    e2ee,
    async offer(peer) {
      const pc = new RTCPeerConnection({ iceServers: [] });
      for (const track of local.getTracks()) {
        const tr = pc.addTransceiver(track, { direction: 'sendonly' });
        if (track.kind === 'video') tr.setCodecPreferences(vp8);
        e2ee.attachSender(tr.sender, track.kind);
      }
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      t.outs[peer] = pc;
      return pc.localDescription.sdp;
    },
    async answer(peer, sdp) {
      const pc = new RTCPeerConnection({ iceServers: [] });
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.srcObject = new MediaStream();
      t.videos[peer] = video;
      pc.ontrack = (event) => {
        video.srcObject.addTrack(event.track);
        video.play().catch(() => {});
      };
      await pc.setRemoteDescription({ type: 'offer', sdp });
      for (const tr of pc.getTransceivers()) e2ee.attachReceiver(tr.receiver, tr.receiver.track.kind);
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      t.ins[peer] = pc;
      return pc.localDescription.sdp;
    },
    async finish(peer, sdp) {
      await t.outs[peer].setRemoteDescription({ type: 'answer', sdp });
    },
    async report() {
      const from = {};
      for (const [peer, pc] of Object.entries(t.ins)) {
        const r = { framesDecoded: 0, width: 0, samples: 0, concealed: 0, state: pc.connectionState };
        (await pc.getStats()).forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          if (s.kind === 'video') {
            r.framesDecoded += s.framesDecoded ?? 0;
            r.width = s.frameWidth ?? 0;
          } else {
            r.samples += s.totalSamplesReceived ?? 0;
            r.concealed += s.concealedSamples ?? 0;
          }
        });
        r.mean = mean(t.videos[peer]);
        from[peer] = r;
      }
      const to = {};
      for (const [peer, pc] of Object.entries(t.outs)) {
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'outbound-rtp' && s.kind === 'video') {
            to[peer] = { framesEncoded: s.framesEncoded, fps: s.framesPerSecond, limit: s.qualityLimitationReason, width: s.frameWidth };
          }
        });
      }
      return { from, to, self: mean(selfVideo), e2ee: await e2ee.stats(), safety: await safetyCode(parseMeetingKey(key)) };
    },
  };
  window.t = t;
  return true;
};

async function link(pages, from, to) {
  const offer = await pages[from].evaluate((peer) => window.t.offer(peer), to);
  const answer = await pages[to].evaluate(([peer, sdp]) => window.t.answer(peer, sdp), [from, offer]);
  await pages[from].evaluate(([peer, sdp]) => window.t.finish(peer, sdp), [to, answer]);
}

try {
  sluice = await startSluice();
  chromium = await launch();
  const pages = {};
  for (const [name, key] of [['ann', KEY], ['bob', KEY], ['cat', WRONG]]) {
    const context = await chromium.browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log(`[${name}] page error: ${e.message}`));
    await page.goto(`${sluice.api}/meet`);
    await page.evaluate(participant, [key]);
    pages[name] = page;
  }
  await pages.ann.evaluate(() => window.t.e2ee.probe(40));
  for (const [from, to] of [['ann', 'bob'], ['bob', 'ann'], ['ann', 'cat'], ['cat', 'ann']]) await link(pages, from, to);

  const report = (name) => pages[name].evaluate(() => window.t.report());
  const seeing = (r, peer) => r.from[peer]?.framesDecoded > 30 && r.from[peer]?.mean;
  let ann = await until(() => report('ann'), (r) => seeing(r, 'bob'), 30_000);
  let bob = await until(() => report('bob'), (r) => seeing(r, 'ann'), 15_000);
  // A measured second of decoding: the frame rate the receiver sees.
  const before = bob.from.ann.framesDecoded;
  const sentBefore = (await report('ann')).to.bob.framesEncoded;
  await new Promise((r) => setTimeout(r, 4000));
  bob = await report('bob');
  ann = await report('ann');
  const cat = await report('cat');
  const fps = (bob.from.ann.framesDecoded - before) / 4;
  const sentFps = (ann.to.bob.framesEncoded - sentBefore) / 4;
  console.log(JSON.stringify({ ann, bob, cat, fps, sentFps }));

  checks.check(ann.from.bob.framesDecoded > 30, 'Ann decodes Bob’s video (same key)', ann.from.bob);
  checks.check(bob.from.ann.framesDecoded > 30, 'Bob decodes Ann’s video (same key)', bob.from.ann);
  // The machine may be loaded: compare with what Ann encoded in the same
  // four seconds rather than with the camera's nominal 15 fps.
  checks.check(fps >= 1 && fps >= sentFps * 0.6, 'Bob decodes Ann at the frame rate she encodes', { fps, sentFps });
  checks.check(bob.from.ann.width === 320, 'Bob decodes Ann’s picture at its size', bob.from.ann.width);
  const close = (a, b) => a && b && a.every((v, i) => Math.abs(v - b[i]) <= 40);
  checks.check(close(bob.from.ann.mean, ann.self), 'Bob’s picture of Ann has the mean colour of Ann’s camera', [bob.from.ann.mean, ann.self]);
  checks.check(close(ann.from.bob.mean, bob.self), 'Ann’s picture of Bob has the mean colour of Bob’s camera', [ann.from.bob.mean, bob.self]);
  const heard = (r) => r.samples > 0 && r.concealed < r.samples * 0.5;
  checks.check(heard(bob.from.ann) && heard(ann.from.bob), 'Ann and Bob hear each other (decoded, mostly not concealed)', [bob.from.ann, ann.from.bob]);
  checks.check(bob.e2ee.decrypted.video > 30 && bob.e2ee.decrypted.audio > 30, 'Bob’s transform opened Ann’s frames', bob.e2ee);
  checks.check(ann.e2ee.encrypted.video > 30 && ann.e2ee.encrypted.audio > 30, 'Ann’s transform sealed her frames', ann.e2ee);
  checks.check(ann.safety === bob.safety && ann.safety !== cat.safety, 'the safety code is the same for the same key only', [ann.safety, bob.safety, cat.safety]);

  checks.check(cat.from.ann.state === 'connected', 'Cat’s connection from Ann is up (packets arrive)', cat.from.ann);
  checks.check(cat.from.ann.framesDecoded === 0, 'Cat (wrong key) decodes no frame of Ann', cat.from.ann);
  checks.check(cat.e2ee.decrypted.video === 0 && cat.e2ee.decrypted.audio === 0, 'Cat’s transform opens nothing', cat.e2ee);
  checks.check(cat.e2ee.dropped.video > 10 && cat.e2ee.dropped.audio > 10, 'Cat’s transform drops every frame', cat.e2ee);
  checks.check(ann.from.cat.framesDecoded === 0, 'Ann decodes nothing from Cat', ann.from.cat);

  const samples = (await pages.ann.evaluate(() => window.t.e2ee.probeSamples())).sent;
  const video = samples.filter((s) => s.kind === 'video');
  const audio = samples.filter((s) => s.kind === 'audio');
  const keyframes = video.filter((s) => (s.plain[0] & 1) === 0);
  checks.check(video.length > 0 && audio.length > 0 && keyframes.length > 0, 'the sender hook saw video (a keyframe too) and audio', [video.length, audio.length, keyframes.length]);
  for (const s of samples) {
    const clearOk = s.clear === (s.kind === 'audio' ? 1 : (s.plain[0] & 1) === 0 ? 10 : 3) && s.plain.slice(0, s.clear).every((b, i) => s.sealed[i] === b);
    // After the clear bytes: the SFrame header, then ciphertext. Compare the
    // frame's bytes with what went out in their place and after the header.
    const body = s.plain.slice(s.clear);
    const sent = s.sealed.slice(s.clear);
    const same = body.filter((b, i) => sent[i] === b).length;
    const sameAfterHeader = body.filter((b, i) => sent[i + 9] === b).length;
    const differs = body.length === 0 || (same <= body.length * 0.1 + 1 && sameAfterHeader <= body.length * 0.1 + 1);
    if (!clearOk || !differs) {
      checks.check(false, 'every sent frame keeps only the codec bytes in clear', { s, same, sameAfterHeader });
      break;
    }
  }
  checks.check(samples.length >= 20, `the sender hook compared ${samples.length} frames: clear bytes as the codec's, the rest ciphertext`, samples.length);
} catch (e) {
  checks.check(false, 'the driver ran to the end', String(e.stack ?? e));
} finally {
  await cleanup();
}
console.log(checks.failures.length ? `FAILED: ${checks.failures.join('; ')}` : 'PASSED');
process.exit(checks.failures.length ? 1 : 0);
