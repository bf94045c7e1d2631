//! Positions in source text that users wrote (rule sets, manifests): byte offsets as
//! the 1-based line and column an editor shows.

/// 1-based line and column (in characters) of byte offset `at` in `src`. An offset past
/// the end or inside a character counts as the start of that character.
pub fn line_col(src: &str, at: usize) -> (u32, u32) {
    let at = floor_char_boundary(src, at.min(src.len()));
    let before = &src[..at];
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = src[line_start..at].chars().count() as u32 + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn lines_and_columns_in_characters() {
        let src = "ab\ncé\nx";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 3), (2, 1));
        // After the two-byte é: column 3.
        assert_eq!(line_col(src, 6), (2, 3));
        // Inside the é: the start of it, not a panic.
        assert_eq!(line_col(src, 5), (2, 2));
        assert_eq!(line_col(src, 100), (3, 2));
    }
}
