// Errors thrown by the client. Every failure is a PlinthError: server answers carry the
// RFC 9457 problem document's members; transport failures have code "network_error".

export class PlinthError extends Error {
  /**
   * @param {object} init
   * @param {number} [init.status] HTTP status (0 when there was no HTTP answer)
   * @param {string} [init.code] stable machine-readable code: branch on this
   * @param {string} [init.detail] human-readable explanation (do not parse)
   * @param {string} [init.title]
   * @param {string} [init.type]
   * @param {Record<string,string>|null} [init.fields] input field -> what is wrong with it
   * @param {object|null} [init.problem] the whole problem document (extension members such as `index`, `errors`, `invocation`)
   * @param {string|null} [init.requestId] the `x-request-id` of the answer
   * @param {unknown} [init.cause]
   */
  constructor({ status = 0, code, detail, title, type, fields, problem, requestId, cause } = {}) {
    super(detail || title || code || "request failed", cause === undefined ? undefined : { cause });
    this.name = "PlinthError";
    this.status = status;
    this.code = code || "unknown";
    this.detail = detail ?? null;
    this.title = title ?? null;
    this.type = type ?? null;
    this.fields = fields ?? null;
    this.problem = problem ?? null;
    this.requestId = requestId ?? null;
    if (cause !== undefined && this.cause === undefined) this.cause = cause;
  }

  /** True when no HTTP answer was received (DNS, refused connection, reset, CORS...). */
  get isNetworkError() {
    return this.code === "network_error";
  }
}

/** A network-level failure of `fetch`. */
export function networkError(cause) {
  const msg = cause && typeof cause === "object" && "message" in cause ? String(cause.message) : String(cause);
  return new PlinthError({ status: 0, code: "network_error", detail: `network error: ${msg}`, cause });
}

export function isProblemType(contentType) {
  const mime = (contentType || "").split(";")[0].trim().toLowerCase();
  return mime === "application/problem+json" || mime === "application/json";
}

/** Builds a PlinthError from an error response (the body is consumed). */
export async function errorFromResponse(res) {
  const requestId = res.headers.get("x-request-id");
  let text = "";
  try {
    text = await res.text();
  } catch {
    // the body could not be read: fall through with what the status says
  }
  let problem = null;
  if (text && isProblemType(res.headers.get("content-type"))) {
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) problem = parsed;
    } catch {
      // not JSON after all
    }
  }
  if (problem) {
    return new PlinthError({
      status: res.status,
      code: typeof problem.code === "string" ? problem.code : "http_error",
      detail: typeof problem.detail === "string" ? problem.detail : undefined,
      title: typeof problem.title === "string" ? problem.title : undefined,
      type: typeof problem.type === "string" ? problem.type : undefined,
      fields: problem.fields && typeof problem.fields === "object" ? problem.fields : null,
      problem,
      requestId,
    });
  }
  return new PlinthError({
    status: res.status,
    code: "http_error",
    detail: text ? `HTTP ${res.status}: ${text.slice(0, 200)}` : `HTTP ${res.status}`,
    requestId,
  });
}
