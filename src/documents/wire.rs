//! The document's public JSON, defined once for every surface that writes it: REST
//! responses and list pages, realtime snapshots and change frames, after-hook events and
//! `ctx.db` results. Adding a field to the public document is one edit here.

use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::store::{ListedDoc, StoredDoc};

/// A document as the API shows it, borrowed: serializing it copies no data. The OpenAPI
/// document names it `DocDto`.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DocDto, description = "A document as the API returns it.")]
pub struct DocJson<'a> {
    pub id: &'a str,
    pub collection: &'a str,
    pub version: i64,
    #[serde(serialize_with = "as_timestamp")]
    #[schema(value_type = String)]
    pub created_at: i64,
    #[serde(serialize_with = "as_timestamp")]
    #[schema(value_type = String)]
    pub updated_at: i64,
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub data: Data<'a>,
}

/// A document's data, parsed or as the JSON text the database holds.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    Value(&'a Value),
    /// Written by us, so valid JSON.
    Stored(&'a str),
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Value(v) => v.serialize(s),
            // Inside another serialized value (a snapshot frame, a `ctx.db` result) the
            // text goes through `RawValue`, which checks it: ~0.8 µs for a small
            // document. A list page splices it without the check (`DocJson::write_to`).
            Data::Stored(text) => match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) => raw.serialize(s),
                Err(_) => s.serialize_unit(),
            },
        }
    }
}

fn as_timestamp<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 24];
    match write_timestamp(*ms, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&timestamp(*ms)),
    }
}

/// What the splice in [`DocJson::write_to`] replaces: the data written as `null`, last.
const NULL_TAIL: &[u8] = b"null}";

impl<'a> DocJson<'a> {
    pub fn of(d: &'a StoredDoc) -> DocJson<'a> {
        DocJson {
            id: &d.id,
            collection: &d.collection,
            version: d.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
            data: Data::Value(&d.data),
        }
    }

    pub fn listed(d: &'a ListedDoc) -> DocJson<'a> {
        DocJson {
            id: &d.id,
            collection: &d.collection,
            version: d.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
            data: Data::Stored(&d.data),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// As a JSON value: what `ctx.db` hands to JavaScript.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Appends the document's JSON to `out`. Stored data text is spliced in as it is, not
    /// parsed: checking it would cost a list page of 20 small documents ~16 µs, a sixth of
    /// the whole request. The fields still come from the one `Serialize` above: the
    /// document is written with `null` data (the last field), which the text replaces.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self.data {
            Data::Value(_) => {
                let _ = serde_json::to_writer(&mut *out, self);
            }
            Data::Stored(text) => {
                let head = DocJson {
                    data: Data::Value(&Value::Null),
                    ..*self
                };
                let _ = serde_json::to_writer(&mut *out, &head);
                if out.ends_with(NULL_TAIL) {
                    out.truncate(out.len() - NULL_TAIL.len());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b'}');
            }
        }
    }
}

/// A document time as the API writes it everywhere (REST, realtime, hook events): RFC 3339
/// UTC with milliseconds, from unix milliseconds.
pub fn timestamp(ms: i64) -> String {
    let mut buf = [0u8; 24];
    match write_timestamp(ms, &mut buf) {
        Some(text) => text.to_owned(),
        None => chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// The unix milliseconds of 0000-01-01T00:00:00.000Z and of 9999-12-31T23:59:59.999Z:
/// the years [`write_timestamp`] writes with four digits, as chrono does.
const FOUR_DIGIT_YEARS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// [`timestamp`] into a stack buffer, for years 0 to 9999 (`None` outside them). Every
/// listed document writes two times, and chrono's formatter (a `String` each, through
/// `fmt`) was 7% of a list request's CPU (BENCHMARKS.md, "Issue 16"); this is the same
/// text, checked against chrono in the tests.
fn write_timestamp(ms: i64, buf: &mut [u8; 24]) -> Option<&str> {
    if !FOUR_DIGIT_YEARS.contains(&ms) {
        return None;
    }
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    let in_day = ms.rem_euclid(86_400_000);
    let (secs, millis) = (in_day / 1000, in_day % 1000);
    let fields = [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, secs / 3600),
        (14, 2, secs / 60 % 60),
        (17, 2, secs % 60),
        (20, 3, millis),
    ];
    for (at, width, mut value) in fields {
        for i in (at..at + width).rev() {
            // value is in 0..=9999 and width digits hold it: the digit is 0..=9
            buf[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        buf[at] = sep;
    }
    std::str::from_utf8(&buf[..]).ok()
}

/// (year, month, day) of a count of days since 1970-01-01 in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredDoc {
        StoredDoc {
            collection: "notes".into(),
            id: "n-1".into(),
            data: serde_json::json!({"title": "a \"quoted\" é", "n": [1, 2.5, null]}),
            version: 3,
            created_at: 1_764_979_200_123,
            updated_at: 1_764_979_201_000,
        }
    }

    /// The exact bytes a client sees; every surface writes these.
    const EXPECTED: &str = r#"{"id":"n-1","collection":"notes","version":3,"created_at":"2025-12-06T00:00:00.123Z","updated_at":"2025-12-06T00:00:01.000Z","data":{"n":[1,2.5,null],"title":"a \"quoted\" é"}}"#;

    #[test]
    fn document_bytes_are_pinned() {
        let d = stored();
        assert_eq!(DocJson::of(&d).to_json(), EXPECTED);
        let mut out = Vec::new();
        DocJson::of(&d).write_to(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), EXPECTED);
    }

    #[test]
    fn stored_text_is_spliced_as_it_is() {
        let d = stored();
        let listed = ListedDoc {
            collection: d.collection.clone(),
            id: d.id.clone(),
            version: d.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
            data: serde_json::to_string(&d.data).unwrap(),
            keys: Vec::new(),
            tie: crate::store::SortValue::Null,
        };
        let mut out = Vec::new();
        DocJson::listed(&listed).write_to(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), EXPECTED);
        assert_eq!(DocJson::listed(&listed).to_json(), EXPECTED);
        assert_eq!(
            DocJson::listed(&listed).to_value(),
            DocJson::of(&d).to_value()
        );
        // PostgreSQL's jsonb text keeps its spaces, as the page writer always did.
        let spaced = ListedDoc {
            data: "{\"a\": 1}".into(),
            ..listed
        };
        let mut out = Vec::new();
        DocJson::listed(&spaced).write_to(&mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with(r#""data":{"a": 1}}"#), "{out}");
    }

    #[test]
    fn timestamps_are_utc_millis() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_764_979_200_123), "2025-12-06T00:00:00.123Z");
    }

    fn chrono_text(ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// The fast writer says what chrono says: at the edges of its range, around leap
    /// days and century years, before 1970, and at a spread of pseudo-random instants.
    #[test]
    fn timestamps_match_chrono() {
        let (lo, hi) = (*FOUR_DIGIT_YEARS.start(), *FOUR_DIGIT_YEARS.end());
        let mut cases = vec![lo, lo + 1, hi - 1, hi, -1, 0, 1, 999, 1000, -1000, -1001];
        for date in [
            "2000-02-29",
            "1900-02-28",
            "1900-03-01",
            "2100-03-01",
            "1600-02-29",
            "1969-12-31",
            "0000-03-01",
            "9999-12-31",
            "2024-12-31",
            "0004-02-29",
        ] {
            let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
            let ms = d
                .and_hms_milli_opt(0, 0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis();
            cases.extend([ms - 1, ms, ms + 1, ms + 86_399_999]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            cases.push(lo + (x >> 1) as i64 % (hi - lo + 1));
        }
        for ms in cases {
            assert_eq!(timestamp(ms), chrono_text(ms), "at {ms}");
        }
        // Outside four-digit years chrono's form is used as it was.
        for ms in [lo - 1, hi + 1, i64::MIN, i64::MAX] {
            assert_eq!(timestamp(ms), chrono_text(ms), "at {ms}");
        }
    }
}
