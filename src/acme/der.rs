//! Reads a certificate's notAfter from its DER (RFC 5280 §4.1), the one field renewal
//! needs: a dozen lines instead of an X.509 parser in the build.

/// The certificate's notAfter as Unix seconds; None when the DER is not a certificate.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // version [0] EXPLICIT is optional (absent means v1).
    if let (0xa0, _, after) = tlv(rest)? {
        rest = after;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, time, _) = tlv(after_not_before)?;
    time_of(tag, time)
}

/// One tag-length-value: (tag, content, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(n)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// UTCTime (YYMMDDHHMMSSZ, 1950–2049) or GeneralizedTime (YYYYMMDDHHMMSSZ).
fn time_of(tag: u8, t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    let full = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: u32 = s.get(..2)?.parse().ok()?;
            format!("{}{s}", if yy >= 50 { 19 } else { 20 })
        }
        (0x18, 14) => s.to_string(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["example.com".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn unix(year: i32, month: u32, day: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(year, month, day)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // Before 2050 X.509 writes UTCTime, from 2050 on GeneralizedTime.
        assert_eq!(not_after(&cert_until(2031, 5, 17)), Some(unix(2031, 5, 17)));
        assert_eq!(not_after(&cert_until(2051, 1, 2)), Some(unix(2051, 1, 2)));
    }

    #[test]
    fn refuses_what_is_not_a_certificate() {
        let der = cert_until(2031, 5, 17);
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(b"hello"), None);
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            // A truncated certificate's outer length overruns what is there.
            assert_eq!(not_after(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(time_of(0x17, b"310517000000"), None, "no Z");
        assert_eq!(time_of(0x17, b"3105170000Z"), None, "too short");
        assert_eq!(time_of(0x04, b"310517000000Z"), None, "not a time");
        assert_eq!(time_of(0x17, b"991231235959Z"), Some(unix(2000, 1, 1) - 1));
    }
}
