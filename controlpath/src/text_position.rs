//! Where a byte offset falls in a configuration text, as the line and column a person reads:
//! the daemon's configuration and the simulator's scenarios both point at what is wrong.

/// 1-based line and column (in characters, not bytes) of byte `offset` of `text`; an offset
/// past the end or inside a character counts from the character's start.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn columns_count_characters() {
        let text = "ab\né = 1\nxyz";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        // After the two-byte é.
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, 4), (2, 1));
        assert_eq!(line_column(text, 1000), (3, 4));
    }
}
