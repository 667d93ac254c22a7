// WHIP (RFC 9725) and WHEP clients: one POST of the offer with the
// participant's bearer token, the answer back, DELETE of the session on
// leave. Failures become a JoinError whose `reason` the page turns into a
// sentence for a person.

/** Why joining failed: `reason` is one of the keys of the page's MESSAGES. */
export class JoinError extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = 'JoinError';
    this.reason = reason;
    this.detail = detail;
  }
}

const GATHER_MS = 2000;

/** Resolves once ICE gathering completes, or after two seconds. */
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const timer = setTimeout(done, GATHER_MS);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The reason of a refused POST, from its status and JSON error code. */
function refusal(status, code) {
  if (status === 401) return 'token';
  if (code === 'meeting_locked') return 'locked';
  if (status === 404) return 'gone';
  if (code === 'e2ee_forbids_observers' || code === 'wrong_passcode') return 'refused';
  if (status === 503 || status === 429) return 'busy';
  if (status === 400 || status === 415 || status === 422) return 'offer';
  return 'server';
}

/**
 * Sends `pc`'s offer to `url` and applies the answer. Returns the
 * session's URL (the Location header) for {@link endSession}.
 */
export async function negotiate(pc, url, token, signal) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
      signal,
    });
  } catch (e) {
    throw new JoinError('network', String(e.message ?? e));
  }
  if (response.status !== 201 && response.status !== 200) {
    let code = '';
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body?.error?.code ?? '';
      message = body?.error?.message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new JoinError(refusal(response.status, code), `${response.status} ${code} ${message}`.trim());
  }
  const answer = await response.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const location = response.headers.get('Location');
  return location ? new URL(location, url).href : null;
}

/** Ends a WHIP/WHEP session (best effort: the relay also times it out). */
export async function endSession(location, token) {
  if (!location) return;
  try {
    await fetch(location, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` }, keepalive: true });
  } catch {
    // leaving must never fail
  }
}
