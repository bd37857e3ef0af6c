//! The masked form of a secret shown in API responses: at most its last four
//! characters, and only when it is long enough for that to reveal little.

/// `****wxyz` for values of 12 characters or more, `****` otherwise.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "****".to_owned();
    }
    let tail: String = chars.iter().skip(chars.len() - 4).collect();
    format!("****{tail}")
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_all_but_a_short_tail() {
        assert_eq!(mask("abcdefghijkl"), "****ijkl");
        assert_eq!(mask("short"), "****");
        assert_eq!(mask(""), "****");
        assert_eq!(mask("한국어한국어한국어한국어"), "****어한국어");
    }
}
