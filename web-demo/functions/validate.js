// Before a signed-in user's vote is stored: the poll must be open and the option one of
// its options. Throwing refuses the write with 400 function_rejected and this message.
export default async function (event, ctx) {
  const vote = event.doc?.data;
  if (!vote) return;
  const poll = await ctx.db.get('polls', String(vote.poll));
  if (!poll || poll.data.active !== true) {
    throw new Error(`there is no open poll '${vote.poll}'`);
  }
  if (!poll.data.options.includes(vote.option)) {
    throw new Error(`'${vote.option}' is not an option (${poll.data.options.join(', ')})`);
  }
}
