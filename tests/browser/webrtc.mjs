// The WebRTC browser scenarios, run by tests/webrtc_browser.rs inside a
// network namespace of its own (only `lo`): node webrtc.mjs <scenario> <api>.
// Exit 0 when every check passed; the last line says what was seen.

import { launch, closeBrowser, openPage, api, admitBrowser, until, sleep } from './lib.mjs';

const [scenario, base] = process.argv.slice(2);
const hardStop = setTimeout(() => { console.error('FAIL: scenario took over 80 s'); process.exit(2); }, 80000);

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
async function publishView(mode) {
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
    const status = await pub.evaluate(() => closeSession(0));
    if (status !== 200) throw new Error('WHIP DELETE answered ' + status);
    const closedAt = Date.now();
    await sleep(3000);
    const a = video(await view.evaluate('report()'))[0].frames;
    await sleep(1500);
    const b = video(await view.evaluate('report()'))[0].frames;
    if (b > a) throw new Error(`video still decoded 3 s after the WHIP DELETE (${a} -> ${b})`);
    console.log(`video stopped within ${Date.now() - closedAt - 1500} ms of the DELETE (frames ${a} -> ${b})`);
  } finally {
    await closeBrowser(browser);
  }
}

try {
  if (scenario === 'publish-view') await publishView('standard');
  else if (scenario === 'publish-view-e2ee') await publishView('e2ee');
  else throw new Error('unknown scenario ' + scenario);
  console.log('PASS', scenario);
  clearTimeout(hardStop);
  process.exit(0);
} catch (e) {
  console.error('FAIL', scenario, e.stack || e);
  process.exit(1);
}
