// Shared by the meeting-page drivers: start the sluice binary inside the
// test's network namespace, launch Debian's Chromium with fake devices,
// and bounded waits. Every wait has a deadline; the caller's hard timer
// ends the process whatever happens.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--allow-loopback-in-peer-connection',
  '--use-fake-device-for-media-stream',
];

/** Ends the process with `code` after `ms`, whatever is still running. */
export function hardStop(ms, cleanup) {
  const timer = setTimeout(async () => {
    console.error(`FAIL: the driver ran past ${ms} ms`);
    await cleanup().catch(() => {});
    process.exit(3);
  }, ms);
  timer.unref();
}

/** Starts `sluice run` on ports the kernel picks; resolves {api, stop}. */
export async function startSluice(extraConfig = '') {
  const bin = process.env.SLUICE_BIN;
  if (!bin) throw new Error('SLUICE_BIN is not set (the cargo test sets it)');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-meet-'));
  const config = join(dir, 'sluice.toml');
  writeFileSync(
    config,
    '[control]\nlisten = "127.0.0.1:0"\n[media]\nlisten = "127.0.0.1:0"\nworkers = 1\npin_cores = false\n' +
      '[sip]\nenabled = false\n[crypto]\ngpu = "off"\n[log]\nlevel = "warn"\n' +
      extraConfig,
  );
  const child = spawn(bin, ['run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SLUICE_LOG: 'warn' } });
  let log = '';
  const api = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner from sluice in 15 s:\n${log}`)), 15_000);
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = /control API on (http:\/\/[0-9.]+:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`sluice exited (${code}) before its banner:\n${log}`)));
  });
  const stop = async () => {
    if (child.exitCode !== null) return;
    child.kill('SIGTERM');
    await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  return { api, stop, log: () => log };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Launches Chromium; `fakeUi` grants camera and microphone to every page. */
export async function launch({ fakeUi = true } = {}) {
  const args = [...CHROMIUM_ARGS, ...(fakeUi ? ['--use-fake-ui-for-media-stream'] : [])];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args, timeout: 30_000 });
  const close = () => Promise.race([browser.close(), sleep(5000)]);
  return { browser, close };
}

/** Polls `probe()` every 500 ms until `done(value)` or `ms` pass; returns the last value. */
export async function until(probe, done, ms) {
  const deadline = Date.now() + ms;
  let value = await probe();
  while (!done(value) && Date.now() < deadline) {
    await sleep(500);
    value = await probe();
  }
  return value;
}

/** Collects failures instead of stopping at the first, and reports them all. */
export class Checks {
  constructor() {
    this.failures = [];
  }

  check(ok, what, detail) {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${ok ? '' : `: ${JSON.stringify(detail)}`}`);
    if (!ok) this.failures.push(what);
  }
}
