//! The `cel` parser's syntax errors, positioned and reworded for people.

use cel::parser::ParseError;

use super::Fail;
use crate::rules::lex;

pub(super) fn parse_failure(src: &str, e: &ParseError) -> Fail {
    let (line, col) = e.pos;
    let at = if line <= 0 {
        0
    } else {
        // the parser counts lines from 1 and columns in characters from 1
        lex::byte_offset(src, line as u32, col.max(1) as u32)
    };
    Fail {
        at,
        message: syntax_message(&e.msg),
    }
}

/// Rewrites the parser's messages for people.
fn syntax_message(msg: &str) -> String {
    let m = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    if m.contains("Recursion limit") {
        return "syntax error: expression is nested too deeply".to_string();
    }
    if m.contains("error recovery attempt limit") {
        return "syntax error: too many errors".to_string();
    }
    let quoted = |rest: &str| -> Option<String> {
        let rest = rest.strip_prefix('\'')?;
        // the token text ends at the last "' " before "expecting" (or the end)
        let end = rest
            .find("' expecting")
            .or_else(|| rest.rfind('\''))
            .unwrap_or(rest.len());
        Some(rest[..end].to_string())
    };
    let describe = |tok: &str| -> String {
        if tok == "<EOF>" {
            "end of expression".to_string()
        } else {
            format!("'{tok}'")
        }
    };
    if let Some(rest) = m.strip_prefix("mismatched input ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: unexpected {}", describe(&tok));
    }
    if let Some(rest) = m.strip_prefix("extraneous input ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: unexpected {}", describe(&tok));
    }
    if let Some(rest) = m.strip_prefix("no viable alternative at input ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: cannot make sense of '{tok}'");
    }
    if let Some(rest) = m.strip_prefix("token recognition error at: ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: invalid character '{tok}'");
    }
    if let Some(rest) = m.strip_prefix("missing ") {
        // missing ')' at '<EOF>'
        if let Some((what, at)) = rest.split_once(" at ") {
            let at = at.trim_matches('\'');
            return format!("syntax error: missing {what} before {}", describe(at));
        }
    }
    format!("syntax error: {m}")
}
