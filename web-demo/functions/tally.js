// Keeps tallies/{poll}.counts exact: every vote created, changed or withdrawn moves the
// counts, once. Delivery is at least once, so the event id is recorded in the same batch
// as the increments: a re-delivered event fails on that first write and changes nothing.
export default async function (event, ctx) {
  const vote = (event.doc ?? event.before).data;
  const delta = {};
  if (event.before) delta[event.before.data.option] = (delta[event.before.data.option] ?? 0) - 1;
  if (event.doc) delta[event.doc.data.option] = (delta[event.doc.data.option] ?? 0) + 1;
  const writes = [{ op: 'create', collection: 'applied', id: event.id, data: { seq: event.seq } }];
  for (const [option, by] of Object.entries(delta)) {
    if (by !== 0) {
      writes.push({
        op: 'patch',
        collection: 'tallies',
        id: vote.poll,
        patch: [{ op: 'increment', path: `/counts/${option}`, value: by }],
      });
    }
  }
  try {
    await ctx.db.batch(writes);
  } catch (e) {
    if (e.code === 'precondition_failed') return; // this event was applied before
    throw e; // e.g. no tally document yet: the job is retried
  }
}
