// Keeps tallies/{poll}.counts exact: every vote created, changed or withdrawn moves the
// counts, once. The hook takes batches (`batch` in plinth.toml): under load one
// invocation nets out many votes into one increment per option.
//
// Delivery is at least once, so each event id is recorded in the same batch write as the
// increments: an event delivered again fails on its marker and changes nothing.
export default async function (events, ctx) {
  try {
    await ctx.db.batch(writesFor(events));
  } catch (e) {
    if (e.code !== 'precondition_failed') throw e; // e.g. no tally yet: retried later
    if (events.length === 1) return; // applied before
    // Some event of the batch was applied before: one at a time, skipping those.
    for (const event of events) {
      try {
        await ctx.db.batch(writesFor([event]));
      } catch (e1) {
        if (e1.code !== 'precondition_failed') throw e1;
      }
    }
  }
}

function writesFor(events) {
  const delta = {}; // poll -> option -> change
  const writes = [];
  for (const event of events) {
    writes.push({ op: 'create', collection: 'applied', id: event.id, data: { seq: event.seq } });
    const move = (vote, by) => {
      const counts = (delta[vote.data.poll] ??= {});
      counts[vote.data.option] = (counts[vote.data.option] ?? 0) + by;
    };
    if (event.before) move(event.before, -1);
    if (event.doc) move(event.doc, +1);
  }
  for (const [poll, counts] of Object.entries(delta)) {
    const patch = Object.entries(counts)
      .filter(([, by]) => by !== 0)
      .map(([option, by]) => ({ op: 'increment', path: `/counts/${option}`, value: by }));
    if (patch.length > 0) writes.push({ op: 'patch', collection: 'tallies', id: poll, patch });
  }
  return writes;
}
