// Twilio's inbound-SMS webhook. Verifies X-Twilio-Signature, understands "VOTE <option>",
// keeps one vote per phone number and poll (a new vote replaces the old one), and
// answers TwiML. A MessageSid seen before is answered without counting twice.

const xml = (s) =>
  s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]);

const twiml = (text) => ({
  status: 200,
  headers: { 'content-type': 'text/xml; charset=utf-8' },
  body: `<?xml version="1.0" encoding="UTF-8"?><Response><Message>${xml(text)}</Message></Response>`,
});

// Twilio signs the full URL it posted to followed by every POST parameter, name then
// value, sorted by name: base64(HMAC-SHA1(auth token, that text)).
const signature = (ctx, url, params) =>
  ctx.crypto.hmac(
    'sha1',
    ctx.env.TWILIO_AUTH_TOKEN,
    url + Object.keys(params).sort().map((k) => k + params[k]).join(''),
    'base64',
  );

// The open poll, looked up at most every two seconds per worker.
let cached = null;
async function openPoll(ctx) {
  if (cached && Date.now() - cached.at < 2000) return cached.poll;
  const page = await ctx.db.list('polls', { filter: 'doc.active == true', limit: 1 });
  cached = { poll: page.items[0] ?? null, at: Date.now() };
  return cached.poll;
}

export default async function (req, ctx) {
  if (req.method !== 'POST') {
    return { status: 405, headers: { allow: 'POST' }, body: 'Twilio posts inbound SMS here.' };
  }
  if (!ctx.env.TWILIO_AUTH_TOKEN) {
    ctx.log.error('the TWILIO_AUTH_TOKEN secret is not set');
    return { status: 500, body: 'not configured' };
  }
  const params = req.form;
  if (!params) return { status: 400, body: 'expected an application/x-www-form-urlencoded body' };
  const given = req.headers['x-twilio-signature'];
  if (!given || !ctx.crypto.timingSafeEqual(given, signature(ctx, req.url, params))) {
    ctx.log.warn('refused: missing or wrong X-Twilio-Signature');
    return { status: 403, body: 'invalid signature' };
  }
  const sid = params.MessageSid ?? '';
  const from = params.From ?? '';
  if (!/^[A-Za-z0-9]{1,64}$/.test(sid) || !from) {
    return { status: 400, body: 'MessageSid and From are required' };
  }

  const poll = await openPoll(ctx);
  if (!poll) return twiml('There is no poll open right now.');
  const options = poll.data.options;
  const match = /^\s*vote\s+(\S+)\s*$/i.exec(params.Body ?? '');
  const option = match ? match[1].toLowerCase() : null;
  if (!option || !options.includes(option)) {
    const list = options.map((o) => o.toUpperCase()).join(', ');
    return twiml(`${poll.data.question} To vote, reply VOTE and one of: ${list}.`);
  }

  // The phone number is kept only as a hash.
  const phone = ctx.crypto.sha256(from).slice(0, 32);
  try {
    // All or nothing: the message is recorded with its vote, so a replayed MessageSid
    // fails on the first write and counts nothing.
    await ctx.db.batch([
      { op: 'create', collection: 'messages', id: sid, data: { poll: poll.id, phone, option } },
      {
        op: 'put',
        collection: 'votes',
        id: `${poll.id}-sms-${phone}`,
        data: { poll: poll.id, option, source: 'sms', phone },
      },
    ]);
  } catch (e) {
    if (e.code === 'precondition_failed') {
      return twiml(`This message was already counted.`);
    }
    throw e;
  }
  return twiml(`Thanks! Your vote for ${option.toUpperCase()} is counted.`);
}
