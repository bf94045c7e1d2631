// PLACEHOLDER (plinth-demo-placeholder) until the real Twilio webhook lands (issue 6):
// it counts nothing and says so, so nothing mistakes it for the real function.
export default async function () {
  return { status: 501, body: { code: 'not_implemented', detail: 'the sms function is a placeholder' } };
}
