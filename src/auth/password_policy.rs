//! Which passwords are accepted for an account: the length rule, and the refusal of
//! passwords that are guessed first (review finding Q3: `password`, `12345678`,
//! `aaaaaaaa`, eight spaces, eight NULs and the email itself were all accepted).
//!
//! Every route that sets a password (sign-up, password change, reset, admin setup and
//! `plinth admin create`) asks [`password_policy`]. Logins do not: a password set before
//! the policy still signs in.

use std::collections::HashSet;
use std::sync::OnceLock;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// The most common passwords of 8 or more characters, lower-case, one a line (`#` lines
/// are comments). Its header says where it comes from and carries its licence.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// Why a password is refused. The length rules answer `validation_failed` as they always
/// did; the others are [weak](Self::is_weak) and answer `weak_password`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
    ControlCharacter,
    OnlyWhitespace,
    OneRepeatedCharacter,
    SameAsEmail,
    Common,
}

impl PasswordProblem {
    /// A password of an acceptable length that is still too easy to guess.
    pub fn is_weak(self) -> bool {
        !matches!(self, PasswordProblem::TooShort | PasswordProblem::TooLong)
    }

    /// What is wrong, for `fields.<name>` and the problem's `detail`.
    pub fn describe(self) -> String {
        match self {
            PasswordProblem::TooShort => format!("must be at least {MIN_LEN} characters"),
            PasswordProblem::TooLong => format!("must be at most {MAX_LEN} characters"),
            PasswordProblem::ControlCharacter => {
                "must not contain control characters (U+0000 to U+001F, U+007F)".into()
            }
            PasswordProblem::OnlyWhitespace => "must not be only whitespace".into(),
            PasswordProblem::OneRepeatedCharacter => {
                "must not be a single character repeated".into()
            }
            PasswordProblem::SameAsEmail => {
                "must not be the email address or the part of it before the @".into()
            }
            PasswordProblem::Common => {
                "is one of the most common passwords; choose one that is harder to guess".into()
            }
        }
    }
}

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Checks a new password of the account of `email` (normalised; None where it is not
/// known yet). Lengths are counted in characters, not bytes. The checks go from the
/// cheapest to the list lookup; the first failing one is reported.
pub fn password_policy(password: &str, email: Option<&str>) -> Result<(), PasswordProblem> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(PasswordProblem::TooShort);
    }
    if n > MAX_LEN {
        return Err(PasswordProblem::TooLong);
    }
    // Control characters cannot be typed reliably, get mangled by forms and logs, and
    // eight NULs pass every other rule.
    if password.chars().any(|c| c.is_ascii_control()) {
        return Err(PasswordProblem::ControlCharacter);
    }
    if password.chars().all(char::is_whitespace) {
        return Err(PasswordProblem::OnlyWhitespace);
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Err(PasswordProblem::OneRepeatedCharacter);
    }
    // The list is lower-case, and so are normalised emails: compare case-insensitively,
    // as a guesser would try `Password` right after `password`.
    let lower = password.to_lowercase();
    if let Some(email) = email {
        let email = email.to_lowercase();
        let local = email.split('@').next().unwrap_or_default();
        if lower == email || lower == local {
            return Err(PasswordProblem::SameAsEmail);
        }
    }
    if common_passwords().contains(lower.as_str()) {
        return Err(PasswordProblem::Common);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PasswordProblem::*;
    use super::*;

    #[test]
    fn lengths_in_characters() {
        assert_eq!(password_policy("x7#kq2!", None), Err(TooShort));
        assert_eq!(password_policy("x7#kq2!m", None), Ok(()));
        assert_eq!(password_policy(&"é€".repeat(64), None), Ok(()));
        assert_eq!(password_policy(&"ab".repeat(64), None), Ok(()));
        assert_eq!(password_policy(&"ab".repeat(65), None), Err(TooLong));
        assert!(!TooShort.is_weak() && !TooLong.is_weak());
    }

    #[test]
    fn refuses_each_weak_class() {
        let email = Some("alice.smith@example.com");
        let cases = [
            ("password", Common),
            ("PassWord", Common),
            ("12345678", Common),
            ("iloveyou", Common),
            ("qwertyuiop", Common),
            ("aaaaaaaa", OneRepeatedCharacter),
            ("€€€€€€€€€", OneRepeatedCharacter),
            ("        ", OnlyWhitespace),
            (" \u{3000}\u{a0}\t\t   ", ControlCharacter),
            ("\u{2003}\u{2003} \u{3000}\u{a0}   ", OnlyWhitespace),
            ("\0\0\0\0\0\0\0\0", ControlCharacter),
            ("good-pass\u{1f}word", ControlCharacter),
            ("good-pass\u{7f}word", ControlCharacter),
            ("alice.smith@example.com", SameAsEmail),
            ("Alice.Smith@Example.COM", SameAsEmail),
            ("ALICE.SMITH", SameAsEmail),
        ];
        for (password, problem) in cases {
            assert_eq!(
                password_policy(password, email),
                Err(problem),
                "{password:?}"
            );
            assert!(problem.is_weak());
            assert!(!problem.describe().is_empty());
        }
    }

    #[test]
    fn accepts_ordinary_passwords() {
        for p in [
            "correct-horse-battery",
            "alice-password-1",
            "Tr0ub4dor&3x",
            "  spaced out words  ",
            "aaaaaaab",
            "mot de passe été",
        ] {
            assert_eq!(password_policy(p, Some("alice@example.com")), Ok(()), "{p}");
        }
        // The email rule needs the email: the local part alone is fine for someone else.
        assert_eq!(
            password_policy("alice.smith", Some("bob@example.com")),
            Ok(())
        );
        assert_eq!(password_policy("alice.smith", None), Ok(()));
    }

    #[test]
    fn the_list_is_loaded_and_well_formed() {
        let set = common_passwords();
        assert!(set.len() > 10_000, "{} entries", set.len());
        for p in set {
            assert!(
                p.chars().count() >= MIN_LEN,
                "{p:?} is shorter than the length rule"
            );
            assert_eq!(*p, p.to_lowercase(), "entries are lower-case");
            assert_eq!(*p, p.trim(), "no surrounding whitespace");
        }
    }
}
