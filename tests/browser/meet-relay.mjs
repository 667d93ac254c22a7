// The meeting page through sluice, as people use it: every page is
// sluice's own /meet with a join link's fragment, publishing over WHIP
// and viewing over WHEP on this build's relay (started here, inside the
// test's lo-only network namespace).
//   1. standard meeting, Ann and Bob: each decodes the other's video and
//      audio; the mute button marks Ann muted; a screenshot of Bob's page
//      goes to $MEET_SCREENSHOT (docs/meet.png);
//   2. E2EE meeting, Ann and Bob with the key, then Cat with another: Ann
//      and Bob decode each other (before and after Cat is in), Cat decodes nothing (her transform drops
//      every frame) and her page says her key differs; what Bob receives
//      from the relay is exactly what Ann's transform sealed (the relay
//      forwards ciphertext byte for byte) and never a plaintext frame.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Checks, hardStop, launch, sleep, startSluice, until } from './meet-lib.mjs';

const checks = new Checks();
let sluice = null;
let chromium = null;
const cleanup = async () => {
  await chromium?.close();
  await sluice?.stop();
};
hardStop(140_000, cleanup);

async function api(method, path, body) {
  const r = await fetch(`${sluice.api}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
  const json = await r.json().catch(() => null);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

/** `sluice demo [--e2ee]`, as the README has a newcomer run it: {id, links: {Ann, Bob}}. */
async function demo(...args) {
  const { stdout } = await promisify(execFile)(process.env.SLUICE_BIN, ['demo', '--api', sluice.api, ...args], { timeout: 15_000 });
  const id = /meeting "([^"]+)"/.exec(stdout)?.[1];
  const links = Object.fromEntries([...stdout.matchAll(/^ {2}(\w+): (http\S+)$/gm)].map((m) => [m[1], m[2]]));
  if (!id || !links.Ann || !links.Bob) throw new Error(`sluice demo printed no meeting and links:\n${stdout}`);
  return { id, links, stdout };
}

/** A join link the test makes itself, through the API (Cat's). */
async function link(meeting, name, key) {
  const p = await api('POST', `/v1/meetings/${meeting}/participants`, { name, transport: 'webrtc' });
  const fragment = new URLSearchParams({ token: p.webrtc.token, whip: p.webrtc.whip, whep: p.webrtc.whep, name });
  if (key) fragment.set('key', key);
  return `${sluice.api}/meet#${fragment}`;
}

async function open(url, name) {
  const context = await chromium.browser.newContext({ viewport: { width: 1000, height: 620 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[${name}] page error: ${e.message}`));
  await page.goto(url);
  return page;
}

const report = (page) => page.evaluate(() => window.sluiceMeet.report());
const decodes = (r) => r.framesDecoded > 30 && r.audioSamples > 0;

async function standard() {
  const { links, stdout } = await demo();
  checks.check(/a standard meeting/.test(stdout) && !/key=/.test(stdout), 'standard: sluice demo prints two links without a key', stdout);
  const ann = await open(links.Ann, 'Ann');
  const bob = await open(links.Bob, 'Bob');
  const [a, b] = await Promise.all([until(() => report(ann), decodes, 40_000), until(() => report(bob), decodes, 40_000)]);
  console.log(JSON.stringify({ standard: { ann: a, bob: b } }));
  checks.check(a.phase === 'joined' && b.phase === 'joined', 'standard: both pages joined', [a.phase, a.notice, b.phase, b.notice]);
  checks.check(decodes(a), 'standard: Ann decodes Bob’s video and audio', a);
  checks.check(decodes(b), 'standard: Bob decodes Ann’s video and audio', b);
  const shown = (r) => r.tiles.some((t) => !t.self && !t.hidden && t.width > 0) && r.tiles.some((t) => t.self && t.name === `${t.name.split(' ')[0]} (you)`);
  checks.check(shown(a) && shown(b), 'standard: the grid shows oneself by name and the other’s picture', [a.tiles, b.tiles]);
  // The relay says who is in which slot: each grid names the other.
  const named = (page, other) => until(() => report(page), (r) => r.tiles.some((t) => !t.self && !t.hidden && t.name === other), 10_000);
  const [an, bn] = await Promise.all([named(ann, 'Bob'), named(bob, 'Ann')]);
  checks.check(an.tiles.some((t) => !t.self && t.name === 'Bob') && bn.tiles.some((t) => !t.self && t.name === 'Ann'), 'standard: each grid names the other (GET on the WHEP session)', [an.tiles, bn.tiles]);
  await ann.click('#mic');
  const muted = await ann.evaluate(() => !document.querySelector('.tile.self .muted').hidden && document.querySelector('#mic').getAttribute('aria-pressed') === 'true');
  checks.check(muted, 'standard: the mute button marks Ann muted', muted);
  await ann.click('#mic');
  if (process.env.MEET_SCREENSHOT) {
    await sleep(1000);
    await bob.screenshot({ path: process.env.MEET_SCREENSHOT });
    console.log(`screenshot: ${process.env.MEET_SCREENSHOT}`);
  }
  await ann.click('#leave');
  const left = await report(ann);
  checks.check(left.phase === 'left' && /You left/.test(left.notice ?? ''), 'standard: Leave ends the meeting for Ann and says so', left);
  await Promise.all([ann.context().close(), bob.context().close()]);
}

async function e2ee() {
  const wrong = Buffer.alloc(32, 0x3c).toString('base64url');
  const { id, links, stdout } = await demo('--e2ee');
  const keys = [...stdout.matchAll(/key=([\w-]+)/g)].map((m) => m[1]);
  checks.check(keys.length === 2 && keys[0] === keys[1] && keys[0].length === 43, 'e2ee: sluice demo --e2ee prints two links with one fresh 32-byte key', keys);
  const meeting = await api('GET', `/v1/meetings/${id}`);
  checks.check(meeting.mode === 'e2ee' && !JSON.stringify(meeting).includes(keys[0]), 'e2ee: the meeting is E2EE and the relay never saw the key', meeting);
  const ann = await open(links.Ann, 'Ann');
  const bob = await open(links.Bob, 'Bob');
  let [a, b] = await Promise.all([until(() => report(ann), decodes, 40_000), until(() => report(bob), decodes, 40_000)]);
  // Record a few seconds of what Ann seals and what Bob gets from the relay.
  await Promise.all([ann.evaluate(() => window.sluiceMeet.e2ee.probe(400)), bob.evaluate(() => window.sluiceMeet.e2ee.probeInbound(600))]);
  await sleep(4000);
  [a, b] = await Promise.all([report(ann), report(bob)]);
  // Cat joins with another key: she decodes nothing, and Ann and Bob, who
  // now also receive her frames in a slot of their own, go on decoding
  // each other.
  const cat = await open(await link(id, 'Cat', wrong), 'Cat');
  const c = await until(() => report(cat), (r) => r.reason === 'wrong-key', 20_000);
  const [a2, b2] = await Promise.all([report(ann), report(bob)]);
  await sleep(3000);
  const [a3, b3] = await Promise.all([report(ann), report(bob)]);
  checks.check(a3.framesDecoded - a2.framesDecoded > 10 && b3.framesDecoded - b2.framesDecoded > 10, 'e2ee: with Cat in, Ann and Bob still decode each other', [a2.framesDecoded, a3.framesDecoded, b2.framesDecoded, b3.framesDecoded]);
  checks.check(a3.e2ee.dropped.video > a.e2ee.dropped.video, 'e2ee: Ann’s transform drops Cat’s frames', [a.e2ee.dropped, a3.e2ee.dropped]);

  // Key rotation, as an integrator's page does it: a new key and epoch in
  // the fragment, no rejoin. Both show the new safety code, send under
  // epoch 2 and keep decoding each other.
  const next = Buffer.alloc(32, 0x77).toString('base64url');
  const rotate = (page) =>
    page.evaluate((k) => {
      const p = new URLSearchParams(location.hash.slice(1));
      p.set('key', k);
      p.set('epoch', '2');
      location.hash = p.toString();
    }, next);
  await Promise.all([rotate(ann), rotate(bob)]);
  const rotated = (r) => r.safety !== a.safety && r.e2ee.kid && BigInt(`0x${r.e2ee.kid}`) >> 40n === 2n;
  const [a4, b4] = await Promise.all([until(() => report(ann), rotated, 10_000), until(() => report(bob), rotated, 10_000)]);
  checks.check(rotated(a4) && rotated(b4) && a4.safety === b4.safety, 'e2ee: a new key in the fragment rotates: new safety code, epoch 2 sends', [a4.safety, b4.safety, a4.e2ee.kid, b4.e2ee.kid]);
  const [a5, b5] = await Promise.all([
    until(() => report(ann), (r) => r.framesDecoded > a4.framesDecoded + 10, 15_000),
    until(() => report(bob), (r) => r.framesDecoded > b4.framesDecoded + 10, 15_000),
  ]);
  checks.check(a5.framesDecoded > a4.framesDecoded + 10 && b5.framesDecoded > b4.framesDecoded + 10, 'e2ee: after the rotation Ann and Bob still decode each other', [a4.framesDecoded, a5.framesDecoded, b4.framesDecoded, b5.framesDecoded]);
  console.log(JSON.stringify({ e2ee: { ann: a, bob: b, cat: c } }));
  checks.check(decodes(a), 'e2ee: Ann decodes Bob (same key)', a);
  checks.check(decodes(b), 'e2ee: Bob decodes Ann (same key)', b);
  checks.check(a.e2ee.decrypted.video > 30 && b.e2ee.decrypted.video > 30, 'e2ee: Ann’s and Bob’s transforms open each other’s frames', [a.e2ee, b.e2ee]);
  checks.check(a.safety === b.safety && a.safety !== c.safety, 'e2ee: the safety code matches for the same key only', [a.safety, b.safety, c.safety]);
  checks.check(c.framesDecoded === 0 && c.e2ee.decrypted.video === 0 && c.e2ee.decrypted.audio === 0, 'e2ee: Cat (wrong key) decodes nothing', c);
  checks.check(c.e2ee.dropped.video > 10 && c.e2ee.dropped.audio > 10, 'e2ee: Cat’s transform drops every frame it gets', c.e2ee);
  checks.check(c.reason === 'wrong-key', 'e2ee: Cat’s page says her key differs', c.notice);
  checks.check(a.reason === null && b.reason === null, 'e2ee: Ann and Bob get no notice', [a.notice, b.notice]);

  const sent = (await ann.evaluate(() => window.sluiceMeet.e2ee.probeSamples())).sent;
  const received = (await bob.evaluate(() => window.sluiceMeet.e2ee.probeSamples())).received;
  const same = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);
  const forwarded = received.filter((r) => sent.some((s) => s.kind === r.kind && same(s.sealed, r.received)));
  checks.check(sent.length > 50 && received.length > 50, 'e2ee: frames recorded on both sides', [sent.length, received.length]);
  checks.check(forwarded.length >= 20 && forwarded.some((r) => r.kind === 'video'), 'e2ee: Bob receives Ann’s sealed frames byte for byte (the relay forwards ciphertext)', forwarded.length);
  let leaked = 0;
  for (const s of sent) {
    const body = s.plain.slice(s.clear, s.clear + 16);
    if (body.length < 8) continue;
    for (const r of received) {
      const tail = r.received.slice(s.clear);
      for (let at = 0; at + body.length <= Math.min(tail.length, 32); at++) if (same(tail.slice(at, at + body.length), body)) leaked += 1;
    }
  }
  checks.check(leaked === 0, 'e2ee: no received frame carries a plaintext frame’s bytes after the clear codec bytes', leaked);
  await Promise.all([ann.context().close(), bob.context().close(), cat.context().close()]);
}

try {
  sluice = await startSluice();
  chromium = await launch();
  await standard();
  await e2ee();
} catch (e) {
  checks.check(false, 'the driver ran to the end', String(e.stack ?? e));
  console.log(sluice?.log());
} finally {
  await cleanup();
}
console.log(checks.failures.length ? `FAILED: ${checks.failures.join('; ')}` : 'PASSED');
process.exit(checks.failures.length ? 1 : 0);
