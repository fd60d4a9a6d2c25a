//! Bounding text that comes from outside (service answers, logs of child processes) without
//! splitting a UTF-8 character. One helper, so every cut in the code base behaves the same.

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// The longest suffix of `s` that is at most `max` bytes and starts on a character boundary.
pub fn suffix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = s.len() - max;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

/// Cuts `s` to at most `max` bytes (marker included) and appends `marker` when anything was cut,
/// so a reader can tell a shortened value from a complete one.
pub fn truncate_with_marker(s: &mut String, max: usize, marker: &str) {
    if s.len() <= max {
        return;
    }
    let keep = prefix(s, max.saturating_sub(marker.len())).len();
    s.truncate(keep);
    s.push_str(marker);
}

/// The marker for text shortened in place (condition messages, events, error messages).
pub const ELLIPSIS: &str = "…";

/// Cuts `s` to at most `max` bytes, ending in `…` when anything was cut.
pub fn truncate(s: &mut String, max: usize) {
    truncate_with_marker(s, max, ELLIPSIS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries() {
        // "é" is two bytes: a cut at 3 would split the second one.
        assert_eq!(prefix("éé", 3), "é");
        assert_eq!(prefix("abc", 10), "abc");
        assert_eq!(prefix("abc", 0), "");
        assert_eq!(suffix("éé", 3), "é");
        assert_eq!(suffix("abcdef", 2), "ef");
        let mut s = "x".repeat(20);
        truncate(&mut s, 10);
        assert_eq!(s.len(), 10, "{s}");
        assert!(s.ends_with(ELLIPSIS));
        let mut short = "short".to_owned();
        truncate(&mut short, 10);
        assert_eq!(short, "short", "nothing cut, no marker");
        let mut multi = "日本語のテキスト".to_owned();
        truncate_with_marker(&mut multi, 8, "+");
        assert!(multi.len() <= 8 && multi.ends_with('+'), "{multi}");
        assert_eq!(multi, "日本+");
    }
}
