//! Small lexical helpers over CEL source text: a pre-parse scan that bounds bracket
//! nesting (the parser recurses deeply per nesting level), source spans of AST nodes
//! (the parser only records the offset of each node's own token), and byte offset to
//! line/column conversion.

use std::collections::HashMap;

use cel::common::ast::IdedExpr;

use super::ast::visit_ids;

/// Byte offsets of every node's token, inclusive: `(start, stop)`.
pub(super) type Offsets = HashMap<u64, (u32, u32)>;

pub(super) use crate::text::line_col;

/// The byte offset of 1-based `line` and character `column` in `src` (clamped).
pub(super) fn byte_offset(src: &str, line: u32, column: u32) -> usize {
    let mut start = 0usize;
    for _ in 1..line.max(1) {
        match src[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return src.len(),
        }
    }
    let line_text = &src[start..];
    let line_text = &line_text[..line_text.find('\n').unwrap_or(line_text.len())];
    let skip = column.max(1) as usize - 1;
    match line_text.char_indices().nth(skip) {
        Some((i, _)) => start + i,
        None => start + line_text.len(),
    }
}

/// If a string literal (with optional `r`/`b` prefixes) starts at `i`, the offset just
/// past it (or the end of the source when it is unterminated).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let mut raw = false;
    while j < b.len() && j < i + 2 && matches!(b[j], b'r' | b'R' | b'b' | b'B') {
        if matches!(b[j], b'r' | b'R') {
            raw = true;
        }
        j += 1;
    }
    if j >= b.len() || !matches!(b[j], b'\'' | b'"') {
        return None;
    }
    // a prefix letter is only a prefix when it does not end an identifier
    if j > i && i > 0 && is_ident_byte(b[i - 1]) {
        return None;
    }
    let q = b[j];
    let triple = j + 2 < b.len() && b[j + 1] == q && b[j + 2] == q;
    let mut k = if triple { j + 3 } else { j + 1 };
    while k < b.len() {
        if !raw && b[k] == b'\\' {
            k += 2;
            continue;
        }
        if b[k] == q {
            if !triple {
                return Some(k + 1);
            }
            if k + 2 < b.len() && b[k + 1] == q && b[k + 2] == q {
                return Some(k + 3);
            }
        }
        if !triple && b[k] == b'\n' {
            return Some(k);
        }
        k += 1;
    }
    Some(b.len())
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Walks `src` calling `f(offset, byte)` for every byte outside string literals and
/// comments.
fn scan_code(src: &str, mut f: impl FnMut(usize, u8) -> bool) {
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = string_end(b, i) {
            i = end.max(i + 1);
            continue;
        }
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if !f(i, b[i]) {
            return;
        }
        i += 1;
    }
}

/// The first offset where bracket nesting exceeds `max`, if any.
pub(super) fn nesting_overflow(src: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut found = None;
    scan_code(src, |i, c| {
        match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    found = Some(i);
                    return false;
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        true
    });
    found
}

/// The source span `[lo, hi)` of `e`: from the first to the last token of its subtree,
/// widened to take in a leading function name, a trailing field name and closing
/// brackets.
pub(super) fn span(src: &str, offsets: &Offsets, e: &IdedExpr) -> (usize, usize) {
    let mut lo = usize::MAX;
    let mut hi = 0usize;
    visit_ids(e, &mut |id| {
        if let Some(&(s, t)) = offsets.get(&id) {
            lo = lo.min(s as usize);
            hi = hi.max(t as usize + 1);
        }
    });
    if lo == usize::MAX || lo >= src.len() {
        return (0, src.len());
    }
    let b = src.as_bytes();
    hi = hi.min(b.len()).max(lo + 1);
    // a function call's token is its '(': take in the name before it
    if b[lo] == b'(' {
        let mut k = lo;
        while k > 0 && b[k - 1] == b' ' {
            k -= 1;
        }
        let mut n = k;
        while n > 0 && is_ident_byte(b[n - 1]) {
            n -= 1;
        }
        if n < k {
            lo = n;
        }
    }
    // a select's token is its '.': take in the field name after it
    let mut changed = true;
    while changed {
        changed = false;
        if hi > 0 && hi <= b.len() && b[hi - 1] == b'.' {
            let mut k = hi;
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            if k < b.len() && b[k] == b'`' {
                if let Some(end) = src[k + 1..].find('`') {
                    hi = k + 1 + end + 1;
                    changed = true;
                }
            } else {
                let start = k;
                while k < b.len() && is_ident_byte(b[k]) {
                    k += 1;
                }
                if k > start {
                    hi = k;
                    changed = true;
                }
            }
        }
        // close brackets opened inside the span
        let mut depth = 0i32;
        scan_code(&src[lo..hi], |_, c| {
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                _ => {}
            }
            true
        });
        if depth > 0 {
            let mut k = hi;
            let mut end = None;
            scan_code(&src[hi..], |i, c| {
                match c {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            return false;
                        }
                    }
                    _ => {}
                }
                true
            });
            if let Some(e) = end {
                k = hi + e + 1;
            }
            if k > hi {
                hi = k;
                changed = true;
            }
        }
        // a select may follow a closed bracket: `f(x).y` is one node only when
        // the select's token is inside, which the first pass covers
    }
    (lo, hi.min(src.len()))
}

/// The source text of `e`.
pub(super) fn text<'s>(src: &'s str, offsets: &Offsets, e: &IdedExpr) -> &'s str {
    let (lo, hi) = span(src, offsets, e);
    src.get(lo..hi).unwrap_or(src).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let s = "ab\ncdé\nf";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 7), (2, 4)); // after 'é' (2 bytes)
        assert_eq!(byte_offset(s, 2, 4), 7);
        assert_eq!(byte_offset(s, 3, 1), 8);
        assert_eq!(byte_offset(s, 9, 9), s.len());
    }

    #[test]
    fn nesting() {
        assert_eq!(nesting_overflow("((a))", 2), None);
        assert_eq!(nesting_overflow("(((a)))", 2), Some(2));
        assert_eq!(nesting_overflow("'((((' + a", 2), None);
        assert_eq!(nesting_overflow("r'\\' + ((((a))))", 3), Some(10));
        assert_eq!(nesting_overflow("a // ((((\n", 2), None);
    }
}
