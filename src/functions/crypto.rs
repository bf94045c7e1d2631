//! `ctx.crypto`: the synchronous host helpers. Strings in, strings out (UTF-8 text for
//! keys and data; hex or base64 for digests), so JavaScript needs no byte arrays.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};

fn encode(bytes: &[u8], encoding: &str) -> Result<Value, String> {
    match encoding {
        "hex" => Ok(Value::from(hex::encode(bytes))),
        "base64" => Ok(Value::from(STANDARD.encode(bytes))),
        other => Err(format!("unknown encoding '{other}' (hex or base64)")),
    }
}

fn str_arg<'a>(args: &'a [Value], i: usize, what: &str) -> Result<&'a str, String> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} must be a string"))
}

/// Runs one `crypto.*` operation on JSON arguments.
pub fn call(op: &str, args: &[Value]) -> Result<Value, String> {
    match op {
        "crypto.hmac" => {
            let alg = str_arg(args, 0, "algorithm")?;
            let key = str_arg(args, 1, "key")?.as_bytes();
            let data = str_arg(args, 2, "data")?.as_bytes();
            let encoding = str_arg(args, 3, "encoding")?;
            let digest = match alg.to_ascii_lowercase().as_str() {
                "sha1" | "sha-1" => {
                    let mut m =
                        <Hmac<Sha1> as KeyInit>::new_from_slice(key).map_err(|e| e.to_string())?;
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                "sha256" | "sha-256" => {
                    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                        .map_err(|e| e.to_string())?;
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                other => return Err(format!("unknown HMAC algorithm '{other}' (sha1 or sha256)")),
            };
            encode(&digest, encoding)
        }
        "crypto.sha256" => {
            let data = str_arg(args, 0, "data")?;
            encode(
                &Sha256::digest(data.as_bytes()),
                str_arg(args, 1, "encoding")?,
            )
        }
        "crypto.randomUUID" => Ok(Value::from(uuid::Uuid::new_v4().to_string())),
        "crypto.timingSafeEqual" => {
            let a = str_arg(args, 0, "a")?.as_bytes();
            let b = str_arg(args, 1, "b")?.as_bytes();
            // Length is not secret (as in Node); the contents are compared in constant time.
            let mut diff = (a.len() != b.len()) as u8;
            for (x, y) in a.iter().zip(b.iter()) {
                diff |= x ^ y;
            }
            Ok(Value::from(diff == 0))
        }
        "crypto.base64Encode" => Ok(Value::from(
            STANDARD.encode(str_arg(args, 0, "text")?.as_bytes()),
        )),
        "crypto.base64Decode" => {
            let bytes = STANDARD
                .decode(str_arg(args, 0, "base64")?.trim())
                .map_err(|e| format!("invalid base64: {e}"))?;
            String::from_utf8(bytes)
                .map(Value::from)
                .map_err(|_| "the decoded bytes are not UTF-8 text".into())
        }
        other => Err(format!("unknown operation '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(op: &str, args: Value) -> Result<Value, String> {
        call(op, args.as_array().expect("array"))
    }

    #[test]
    fn hmac_matches_known_vectors() {
        // RFC 2202 / RFC 4231 test case 2.
        assert_eq!(
            run(
                "crypto.hmac",
                json!(["sha1", "Jefe", "what do ya want for nothing?", "hex"])
            )
            .unwrap(),
            json!("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
        assert_eq!(
            run(
                "crypto.hmac",
                json!(["sha256", "Jefe", "what do ya want for nothing?", "hex"])
            )
            .unwrap(),
            json!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(
            run("crypto.sha256", json!(["abc", "hex"])).unwrap(),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            run("crypto.timingSafeEqual", json!(["abc", "abc"])).unwrap(),
            json!(true)
        );
        assert_eq!(
            run("crypto.timingSafeEqual", json!(["abc", "abd"])).unwrap(),
            json!(false)
        );
        assert_eq!(
            run("crypto.timingSafeEqual", json!(["abc", "abcd"])).unwrap(),
            json!(false)
        );
        let b = run("crypto.base64Encode", json!(["héllo"])).unwrap();
        assert_eq!(
            run("crypto.base64Decode", json!([b])).unwrap(),
            json!("héllo")
        );
        assert!(run("crypto.hmac", json!(["md5", "k", "d", "hex"])).is_err());
        assert!(run("crypto.base64Decode", json!(["@@"])).is_err());
    }
}
