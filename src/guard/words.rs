//! The blocked-word filter (the seeds' "blocked-word filtering") on every
//! publish path: matching words are masked with asterisks or the publish is
//! refused. Matching ignores ASCII case; other scripts match as written.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordMode {
    /// Replace each blocked word with one `*` per character.
    Mask,
    /// Refuse the publish (HTTP 422).
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordFilter {
    /// Lower-cased (ASCII) words, longest first so overlapping words mask fully.
    words: Vec<String>,
    mode: WordMode,
}

/// The publish was refused because it holds a blocked word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked;

impl WordFilter {
    pub fn new(words: &str, mode: WordMode) -> WordFilter {
        let mut words: Vec<String> = words
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| w.to_ascii_lowercase())
            .collect();
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        WordFilter { words, mode }
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The payload as it may be published, or `Blocked`.
    pub fn apply<'a>(&self, text: &'a str) -> Result<Cow<'a, str>, Blocked> {
        if self.words.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        let lower = text.to_ascii_lowercase();
        // ASCII lowering keeps byte offsets, so matches map back to `text`.
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for word in &self.words {
            let mut from = 0;
            while let Some(i) = lower.get(from..).and_then(|rest| rest.find(word.as_str())) {
                let start = from + i;
                hits.push((start, start + word.len()));
                from = start + word.len();
            }
        }
        if hits.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        if self.mode == WordMode::Reject {
            return Err(Blocked);
        }
        let mut masked = String::with_capacity(text.len());
        for (i, ch) in text.char_indices() {
            if hits.iter().any(|(s, e)| i >= *s && i < *e) {
                masked.push('*');
            } else {
                masked.push(ch);
            }
        }
        Ok(Cow::Owned(masked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_rejects() {
        let mask = WordFilter::new("darn, 坏话 ,heck", WordMode::Mask);
        let cases: &[(&str, &str)] = &[
            ("clean text", "clean text"),
            ("oh DARN it", "oh **** it"),
            ("heckheck", "********"),
            ("说坏话了", "说**了"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(mask.apply(input).unwrap(), *want, "{input}");
        }
        let reject = WordFilter::new("darn", WordMode::Reject);
        assert_eq!(reject.apply("Darn"), Err(Blocked));
        assert_eq!(reject.apply("fine").unwrap(), "fine");
        assert!(WordFilter::new(" , ", WordMode::Mask).is_empty());
    }
}
