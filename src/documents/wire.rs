//! The document's public JSON, as every surface writes it (REST, realtime, hook events,
//! `ctx.db`).

/// A document time as the API writes it everywhere (REST, realtime, hook events): RFC 3339
/// UTC with milliseconds, from unix milliseconds.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
