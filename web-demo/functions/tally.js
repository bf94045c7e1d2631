// Keeps tallies/{poll}.counts exact: every vote created, changed or withdrawn moves the
// counts, once. The hook takes batches (`batch` in plinth.toml): under load one
// invocation nets out many votes into one increment per option.
//
// Delivery is at least once, so the increments are committed with `{ ack: true }`: in
// one transaction with the deletion of these events' jobs. A delivery that was taken
// over (it outlived its lease and the events were delivered again) cannot commit them a
// second time: its batch fails with `delivery_superseded` and writes nothing.
export default async function (events, ctx) {
  const writes = incrementsFor(events);
  if (writes.length === 0) return; // the votes netted out: nothing to count
  try {
    await ctx.db.batch(writes, { ack: true });
  } catch (e) {
    if (e.code === 'delivery_superseded') return; // counted by the delivery that took over
    throw e; // e.g. no tally yet: retried later
  }
}

function incrementsFor(events) {
  const delta = {}; // poll -> option -> change
  const move = (vote, by) => {
    const counts = (delta[vote.data.poll] ??= {});
    counts[vote.data.option] = (counts[vote.data.option] ?? 0) + by;
  };
  for (const event of events) {
    if (event.before) move(event.before, -1);
    if (event.doc) move(event.doc, +1);
  }
  const writes = [];
  for (const [poll, counts] of Object.entries(delta)) {
    const patch = Object.entries(counts)
      .filter(([, by]) => by !== 0)
      .map(([option, by]) => ({ op: 'increment', path: `/counts/${option}`, value: by }));
    if (patch.length > 0) writes.push({ op: 'patch', collection: 'tallies', id: poll, patch });
  }
  return writes;
}
