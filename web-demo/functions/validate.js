// PLACEHOLDER until the real validation hook lands (issue 6): a vote must name an open
// poll and one of its options.
export default async function (event, ctx) {
  const vote = event.doc?.data;
  if (!vote) return;
  const poll = await ctx.db.get('polls', String(vote.poll));
  if (!poll || poll.data.active !== true) throw new Error(`there is no open poll '${vote.poll}'`);
  if (!poll.data.options.includes(vote.option)) {
    throw new Error(`'${vote.option}' is not an option (${poll.data.options.join(', ')})`);
  }
}
