// The WebRTC browser scenarios, run by tests/webrtc_browser.rs inside a
// network namespace of its own (only `lo`): node webrtc.mjs <scenario> <api>.
// Exit 0 when every check passed; the last line says what was seen.

import { createInterface } from 'node:readline';
import { launch, closeBrowser, openPage, api, admitBrowser, until, sleep } from './lib.mjs';

const [scenario, base] = process.argv.slice(2);
// The dial-in scenario waits on the test's phone as well: longer.
const limit = scenario === 'mixed-dialin' ? 150 : 80;
const hardStop = setTimeout(() => { console.error(`FAIL: scenario took over ${limit} s`); process.exit(2); }, limit * 1000);

const video = (r, i = 0) => r[i].inbound.filter((x) => x.kind === 'video');
const audio = (r, i = 0) => r[i].inbound.filter((x) => x.kind === 'audio');
const decoding = (r, frames) => video(r).some((v) => v.frames > frames);
const hearing = (r, energy) => audio(r).some((a) => a.energy > energy);

async function meeting(mode) {
  const owner = { account: 'test', verified: true };
  const r = await api(base, 'POST', '/v1/meetings', { mode, owner });
  if (r.status !== 201) throw new Error('meeting: ' + JSON.stringify(r.json));
  return r.json.id;
}

// One browser publishes, another views; then the publisher's WHIP session
// is deleted and the viewer's video stops.
// stopBy: 'whip' (the publisher's WHIP DELETE) or 'participant' (the
// integrator deletes the publishing participant).
async function publishView(mode, stopBy) {
  const id = await meeting(mode);
  const alice = await admitBrowser(base, id, 'alice');
  const bob = await admitBrowser(base, id, 'bob');
  const browser = await launch();
  try {
    const pub = await openPage(browser, base);
    const view = await openPage(browser, base);
    await pub.evaluate(([u, t]) => publish(u, t, { audio: true, video: true }), [alice.whip, alice.token]);
    await view.evaluate(([u, t]) => view(u, t, { audio: 1, video: 1 }), [bob.whep, bob.token]);
    const seen = await until(view, 20000, (r) => decoding(r, 20) && hearing(r, 0.0001));
    const before = await until(view, 5000, (r) => decoding(r, video(seen)[0].frames + 5));
    console.log('viewer decodes', JSON.stringify(before[0]));
    if (stopBy === 'whip') {
      const status = await pub.evaluate(() => closeSession(0));
      if (status !== 200) throw new Error('WHIP DELETE answered ' + status);
    } else {
      const r = await api(base, 'DELETE', `/v1/meetings/${id}/participants/${alice.id}`);
      if (r.status !== 204) throw new Error('participant DELETE answered ' + r.status);
    }
    const closedAt = Date.now();
    await sleep(3000);
    const a = video(await view.evaluate('report()'))[0].frames;
    await sleep(1500);
    const b = video(await view.evaluate('report()'))[0].frames;
    if (b > a) throw new Error(`video still decoded 3 s after the WHIP DELETE (${a} -> ${b})`);
    console.log(`${stopBy} DELETE: no video frame decoded 3 to 4.5 s after it (frames ${a} -> ${b}, ${Date.now() - closedAt} ms)`);
  } finally {
    await closeBrowser(browser);
  }
}

// A browser and an SDES participant (driven by the Rust test) in one
// meeting: the browser publishes and views; it must receive the SDES
// participant's audio stream (its SSRC, argv), the test checks the rest.
async function mixed(args) {
  const { whip, whep, token, sdes_ssrc: sdesSsrc } = JSON.parse(args);
  const browser = await launch();
  try {
    const page = await openPage(browser, base);
    await page.evaluate(([u, t]) => publish(u, t, { audio: true, video: true }), [base + whip, token]);
    await page.evaluate(([u, t]) => view(u, t, { audio: 1, video: 1 }), [base + whep, token]);
    // The SDES stream is the meeting's only audio the browser may receive
    // (not its own): it fills the audio slot, under the slot's SSRC.
    const r = await until(page, 20000, (r) => r[1].inbound.some((x) => x.kind === 'audio' && x.ssrc !== sdesSsrc && x.packets > 50)
      && r[0].outbound.some((x) => x.kind === 'video' && x.packets > 50));
    console.log('browser received the SDES stream', JSON.stringify(r[1].inbound));
    // Keep publishing while the test counts what reached the SDES side.
    await sleep(3000);
  } finally {
    await closeBrowser(browser);
  }
}

// A browser, an SDES participant and a dial-in caller in one meeting
// (argv: {whip, whep, token, sdes}, the SDES participant's id). The
// Rust test drives the other two and talks to this scenario by lines:
// it prints `READY {audio, video}` (its outbound SSRCs) once it hears
// the SDES participant, reads `caller <id>` when the caller has joined,
// prints `CALLER-IN` once the caller (silent so far) fills a free slot,
// reads `talk` when the caller starts its tone, prints `HEARD` once the
// caller is heard in both views, and closes on `done`.
// The browser publishes a 700 Hz tone and its camera, and views twice:
// view A with two audio slots (the SDES participant's and the caller's)
// and one video slot (the SDES participant's VP8: the one other video in
// the meeting), view B with one audio slot, which the caller must take
// from the SDES participant by its RFC 6464 level (the SDES client sends
// no level: always silent).
async function mixedDialin(args) {
  const { whip, whep, token, sdes } = JSON.parse(args);
  const lines = [];
  let wake = null;
  const input = createInterface({ input: process.stdin });
  input.on('line', (l) => { lines.push(l.trim()); if (wake) wake(); });
  const line = async (ms) => {
    const end = Date.now() + ms;
    while (!lines.length && Date.now() < end) await new Promise((r) => { wake = r; setTimeout(r, 250); });
    if (!lines.length) throw new Error(`no line from the test within ${ms} ms`);
    return lines.shift();
  };
  const browser = await launch();
  try {
    const page = await openPage(browser, base);
    await page.evaluate(([u, t]) => publish(u, t, { audio: true, video: true, tone: 0.5, freq: 700 }), [base + whip, token]);
    await page.evaluate(([u, t]) => view(u, t, { audio: 2, video: 1 }), [base + whep, token]);
    await page.evaluate(([u, t]) => view(u, t, { audio: 1, video: 0 }), [base + whep, token]);
    // Slot i of view `session` as [slot, its inbound-rtp] (by mid).
    const slotsOf = async (session) => {
      const slots = await page.evaluate((i) => window.slots(i), session);
      if (!Array.isArray(slots)) throw new Error(`GET on view ${session} answered ${JSON.stringify(slots)}`);
      return slots;
    };
    const inbound = (r, session, slot) => r[session].inbound.find((x) => x.mid === slot.mid) || { energy: 0, packets: 0, frames: 0 };
    const holding = async (session, who, kind = 'audio') => (await slotsOf(session))
      .find((s) => s.participant_id === who && s.kind === kind);

    // The browser decodes the SDES participant's tone in both views.
    let r = await until(page, 25000, (r) => r[0].state === 'connected'
      && ['audio', 'video'].every((k) => r[0].outbound.some((x) => x.kind === k && x.packets > 50))
      && r[1].state === 'connected' && r[2].state === 'connected');
    for (const session of [1, 2]) {
      const slot = await holding(session, sdes);
      if (!slot) throw new Error(`view ${session}: no slot carries the SDES participant: ${JSON.stringify(await slotsOf(session))}`);
      r = await until(page, 15000, (r) => inbound(r, session, slot).energy > 0.005);
      console.log(`view ${session} hears the SDES participant in slot ${slot.mid}:`, JSON.stringify(inbound(r, session, slot)));
    }
    // View A's video slot carries the SDES participant (GET names it) and
    // decodes its frames, more and more of them.
    let slotV;
    for (const end = Date.now() + 15000; !slotV && Date.now() < end; await sleep(250)) slotV = await holding(1, sdes, 'video');
    if (!slotV) throw new Error('no video slot of view A carries the SDES participant: ' + JSON.stringify(await slotsOf(1)));
    r = await until(page, 20000, (r) => inbound(r, 1, slotV).frames > 10);
    const firstFrames = inbound(r, 1, slotV).frames;
    r = await until(page, 10000, (r) => inbound(r, 1, slotV).frames > firstFrames + 10);
    console.log(`view 1 sees the SDES participant in video slot ${slotV.mid}:`, JSON.stringify(inbound(r, 1, slotV)));
    const out = (kind) => r[0].outbound.find((x) => x.kind === kind).ssrc;
    console.log('READY ' + JSON.stringify({ audio: out('audio'), video: out('video') }));

    const said = await line(60000);
    if (!said.startsWith('caller ')) throw new Error('expected `caller <id>`, got ' + said);
    const caller = said.slice('caller '.length);
    // A publisher who joins later takes the free slot of view A; view B's
    // one slot stays with the SDES participant while the caller is silent.
    let slotA;
    for (const end = Date.now() + 15000; !slotA && Date.now() < end; await sleep(250)) slotA = await holding(1, caller);
    if (!slotA) throw new Error('the caller never filled view A\'s free audio slot: ' + JSON.stringify(await slotsOf(1)));
    if (!(await holding(2, sdes))) throw new Error('a silent caller took view B\'s slot: ' + JSON.stringify(await slotsOf(2)));
    const quiet = inbound(await page.evaluate('report()'), 1, slotA).energy;
    console.log(`CALLER-IN slot ${slotA.mid} of view A, energy ${quiet} while silent`);

    const talk = await line(30000);
    if (talk !== 'talk') throw new Error('expected `talk`, got ' + talk);
    // While the caller talks: view A's caller slot gets louder, and view
    // B's one slot goes to the caller (the loudest by RFC 6464 level) and
    // carries its tone.
    r = await until(page, 20000, (r) => inbound(r, 1, slotA).energy > quiet + 0.01);
    console.log(`view A hears the caller: energy ${quiet} -> ${inbound(r, 1, slotA).energy}`);
    let slotB;
    for (const end = Date.now() + 15000; !slotB && Date.now() < end; await sleep(250)) slotB = await holding(2, caller);
    if (!slotB) throw new Error('view B\'s slot did not go to the talking caller: ' + JSON.stringify(await slotsOf(2)));
    const switched = inbound(await page.evaluate('report()'), 2, slotB).energy;
    r = await until(page, 15000, (r) => inbound(r, 2, slotB).energy > switched + 0.01);
    console.log(`view B's slot went to the caller: energy ${switched} -> ${inbound(r, 2, slotB).energy}`);
    console.log('HEARD');
    // Publish on while the test listens at the phone and the SDES side.
    const done = await line(30000);
    if (done !== 'done') throw new Error('expected `done`, got ' + done);
  } finally {
    input.close();
    await closeBrowser(browser);
  }
}

// Two browsers each publish and view (two audio and two video slots);
// each decodes the other's video and hears its audio. A third joins
// later: both see it in their free slot with no renegotiation, and it
// sees both.
async function lateJoiner() {
  const id = await meeting('standard');
  const people = [];
  for (const name of ['ann', 'ben', 'cat']) people.push(await admitBrowser(base, id, name));
  const browser = await launch();
  const slots = { audio: 2, video: 2 };
  try {
    const pages = [];
    const join = async (who) => {
      const page = await openPage(browser, base);
      await page.evaluate(([u, t]) => publish(u, t, { audio: true, video: true }), [who.whip, who.token]);
      await page.evaluate(([u, t, s]) => view(u, t, s), [who.whep, who.token, slots]);
      pages.push(page);
      return page;
    };
    // Session 1 of each page is its WHEP view.
    const videoFrames = (r) => r[1].inbound.filter((x) => x.kind === 'video').map((x) => x.frames);
    const energy = (r) => r[1].inbound.filter((x) => x.kind === 'audio').map((x) => x.energy);
    const a = await join(people[0]);
    const b = await join(people[1]);
    for (const page of [a, b]) {
      const r = await until(page, 25000, (r) => videoFrames(r).some((f) => f > 20) && energy(r).some((e) => e > 0.0001));
      console.log('two browsers: a viewer decodes', JSON.stringify(videoFrames(r)), 'energy', JSON.stringify(energy(r)));
    }
    const c = await join(people[2]);
    for (const page of [a, b, c]) {
      const r = await until(page, 25000, (r) => videoFrames(r).filter((f) => f > 20).length === 2
        && energy(r).filter((e) => e > 0.0001).length === 2);
      console.log('three browsers: a viewer decodes', JSON.stringify(videoFrames(r)), 'energy', JSON.stringify(energy(r)));
    }
  } finally {
    await closeBrowser(browser);
  }
}

// A viewer with one audio and one video slot: ann (silent) publishes
// first and fills both; ben joins later and speaks (a steady tone), and
// both slots go to him: GET on the WHEP session names him, and the
// viewer's one video stream (same SSRC) goes on decoding across the
// switch: sequence numbers and timestamps continue, a keyframe came.
async function speaker() {
  const id = await meeting('standard');
  const [ann, ben, vic] = [await admitBrowser(base, id, 'ann'), await admitBrowser(base, id, 'ben'), await admitBrowser(base, id, 'vic')];
  const browser = await launch();
  try {
    const a = await openPage(browser, base);
    await a.evaluate(([u, t]) => publish(u, t, { audio: true, video: true, tone: 0 }), [ann.whip, ann.token]);
    const v = await openPage(browser, base);
    await v.evaluate(([u, t]) => view(u, t, { audio: 1, video: 1 }), [vic.whep, vic.token]);
    const first = await until(v, 20000, (r) => decoding(r, 20));
    const names = async () => (await v.evaluate(() => window.slots(0))).map((s) => `${s.kind}:${s.display_name}`).sort().join(' ');
    const before = await names();
    if (before !== 'audio:ann video:ann') throw new Error('first come: ' + before);
    const ssrc = video(first)[0].ssrc;
    const b = await openPage(browser, base);
    await b.evaluate(([u, t]) => publish(u, t, { audio: true, video: true, tone: 0.8 }), [ben.whip, ben.token]);
    let after = before;
    for (const end = Date.now() + 15000; after !== 'audio:ben video:ben' && Date.now() < end; await sleep(250)) after = await names();
    if (after !== 'audio:ben video:ben') throw new Error('the slots did not follow the speaker: ' + after);
    const at = await v.evaluate('report()');
    const switched = video(at)[0].frames;
    const quiet = audio(at)[0].energy;
    // Ben's tone is heard in the audio slot: its energy grows.
    const r = await until(v, 10000, (r) => video(r)[0].frames > switched + 30 && audio(r)[0].energy > quiet + 0.01);
    const streams = video(r);
    if (streams.length !== 1 || streams[0].ssrc !== ssrc) throw new Error('not one continuous video stream: ' + JSON.stringify(streams));
    console.log(`slots follow the speaker: ${before} -> ${after}; video frames ${switched} -> ${streams[0].frames} on SSRC ${ssrc}; audio energy ${quiet} -> ${audio(r)[0].energy}`);
  } finally {
    await closeBrowser(browser);
  }
}

// A WHEP viewer whose offer lists only one video codec (argv: {whep,
// token, codec}) while the publisher (the test's ffmpeg CLI) sends the
// other: it decodes video in the codec it offered (a rendition).
async function codecView(args) {
  const { whep, token, codec } = JSON.parse(args);
  const browser = await launch();
  try {
    const page = await openPage(browser, base);
    await page.evaluate(([u, t, c]) => view(u, t, { audio: 0, video: 1, codec: c }), [base + whep, token, codec]);
    const offered = await page.evaluate(() => window.sessions[0].pc.localDescription.sdp);
    const rtpmaps = offered.split('\r\n').filter((l) => l.startsWith('a=rtpmap:'));
    if (rtpmaps.some((l) => /(VP8|H264)\//.test(l) && !l.includes(codec + '/'))) {
      throw new Error('the offer lists another codec: ' + rtpmaps.join(' | '));
    }
    const want = 'video/' + codec;
    const first = await until(page, 30000, (r) => r[0].inbound.some((v) => v.kind === 'video' && v.frames > 10));
    const later = await until(page, 10000, (r) => r[0].inbound.some((v) => v.kind === 'video'
      && v.frames > video(first)[0].frames + 20));
    const v = video(later)[0];
    if ((v.codec || '').toLowerCase() !== want.toLowerCase()) throw new Error(`decoded ${v.codec}, not ${want}`);
    console.log('viewer decodes', JSON.stringify(v));
  } finally {
    await closeBrowser(browser);
  }
}

try {
  if (scenario === 'speaker') await speaker();
  else if (scenario === 'publish-view') await publishView('standard', 'whip');
  else if (scenario === 'publish-view-e2ee') await publishView('e2ee', 'participant');
  else if (scenario === 'late-joiner') await lateJoiner();
  else if (scenario === 'mixed') await mixed(process.argv[4]);
  else if (scenario === 'mixed-dialin') await mixedDialin(process.argv[4]);
  else if (scenario === 'codec-view') await codecView(process.argv[4]);
  else throw new Error('unknown scenario ' + scenario);
  console.log('PASS', scenario);
  clearTimeout(hardStop);
  process.exit(0);
} catch (e) {
  console.error('FAIL', scenario, e.stack || e);
  process.exit(1);
}
