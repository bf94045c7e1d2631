// PLACEHOLDER until the real tally hook lands (issue 6): moves tallies/{poll}.counts by
// each vote created, changed or withdrawn, once per event.
export default async function (event, ctx) {
  const poll = (event.doc ?? event.before).data.poll;
  const writes = [{ op: 'create', collection: 'applied', id: event.id, data: {} }];
  if (event.before) writes.push({ op: 'patch', collection: 'tallies', id: poll,
    patch: [{ op: 'increment', path: `/counts/${event.before.data.option}`, value: -1 }] });
  if (event.doc) writes.push({ op: 'patch', collection: 'tallies', id: poll,
    patch: [{ op: 'increment', path: `/counts/${event.doc.data.option}`, value: 1 }] });
  try { await ctx.db.batch(writes); }
  catch (e) { if (e.code !== 'document_exists' && e.code !== 'precondition_failed') throw e; }
}
