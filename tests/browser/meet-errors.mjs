// The sentences a person meets on the meeting page, through this build's
// relay: a link without its parameters, a token the relay refuses, a
// meeting locked after the person was admitted (and Try again once it is
// unlocked), a camera the browser denies, and the connection lost when
// the relay goes away (the page says so and keeps trying to reconnect).
import { Checks, hardStop, launch, startSluice, until } from './meet-lib.mjs';

const checks = new Checks();
let sluice = null;
const browsers = [];
const cleanup = async () => {
  for (const b of browsers) await b.close();
  await sluice?.stop();
};
hardStop(110_000, cleanup);

async function api(method, path, body) {
  const r = await fetch(`${sluice.api}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status}`);
  return r.json();
}

async function admit(meeting, name) {
  const p = await api('POST', `/v1/meetings/${meeting}/participants`, { name, transport: 'webrtc' });
  return new URLSearchParams({ token: p.webrtc.token, whip: p.webrtc.whip, whep: p.webrtc.whep, name });
}

const report = (page) => page.evaluate(() => window.sluiceMeet.report());

try {
  sluice = await startSluice();
  const { id } = await api('POST', '/v1/meetings', { mode: 'standard', owner: { account: 'test', verified: false } });
  const granted = await launch();
  browsers.push(granted);
  const page = await (await granted.browser.newContext()).newPage();

  await page.goto(`${sluice.api}/meet#token=abc`);
  let r = await until(() => report(page), (x) => x.reason, 10_000);
  checks.check(r.reason === 'link' && /incomplete/.test(r.notice), 'a link without whip/whep says it is incomplete', r);

  const bad = await admit(id, 'Eve');
  bad.set('token', 'not-the-token');
  await page.goto(`${sluice.api}/meet#${bad}`);
  await page.reload();
  r = await until(() => report(page), (x) => x.reason, 20_000);
  checks.check(r.reason === 'token' && /invitation was refused/.test(r.notice), 'a refused token says the invitation was refused', r);

  // Admitted, then the host locks the meeting before the page connects:
  // the relay refuses the WHIP/WHEP sessions (403 meeting_locked) and the
  // page says the meeting is locked; unlocked, Try again joins.
  const late = await admit(id, 'Lou');
  await api('POST', `/v1/meetings/${id}/lock`, { locked: true });
  await page.goto(`${sluice.api}/meet#${late}`);
  await page.reload();
  r = await until(() => report(page), (x) => x.reason, 20_000);
  checks.check(r.reason === 'locked' && /meeting is locked/.test(r.notice), 'a meeting locked after admission says it is locked', r);
  const offered = await page.evaluate(() => !document.getElementById('notice-retry').hidden);
  checks.check(offered, 'a locked meeting offers Try again', offered);
  await api('POST', `/v1/meetings/${id}/lock`, { locked: false });
  await page.click('#notice-retry');
  r = await until(() => report(page), (x) => x.phase === 'joined', 30_000);
  checks.check(r.phase === 'joined' && r.reason === null, 'unlocked, Try again joins', r);

  const denied = await launch({ fakeUi: false });
  browsers.push(denied);
  const context = await denied.browser.newContext({ permissions: [] });
  const deniedPage = await context.newPage();
  await deniedPage.goto(`${sluice.api}/meet#${await admit(id, 'Dan')}`);
  r = await until(() => report(deniedPage), (x) => x.reason, 20_000);
  checks.check(r.reason === 'camera-denied' && /denied/.test(r.notice), 'a denied camera says how to allow it', r);
  const retry = await deniedPage.evaluate(() => !document.getElementById('notice-retry').hidden);
  checks.check(retry, 'a denied camera offers Try again', retry);

  await page.goto(`${sluice.api}/meet#${await admit(id, 'Ann')}`);
  await page.reload();
  r = await until(() => report(page), (x) => x.phase === 'joined' && x.framesEncoded > 10, 30_000);
  checks.check(r.phase === 'joined', 'Ann joins', r);
  await sluice.stop();
  r = await until(() => report(page), (x) => x.phase === 'reconnecting' || (x.phase === 'connecting' && x.reason === null), 30_000);
  const status = await page.evaluate(() => document.getElementById('status').textContent);
  checks.check(['reconnecting', 'connecting'].includes(r.phase) && /Reconnecting/.test(status), 'a lost relay: the page says it reconnects', { r, status });
} catch (e) {
  checks.check(false, 'the driver ran to the end', String(e.stack ?? e));
} finally {
  await cleanup();
}
console.log(checks.failures.length ? `FAILED: ${checks.failures.join('; ')}` : 'PASSED');
process.exit(checks.failures.length ? 1 : 0);
