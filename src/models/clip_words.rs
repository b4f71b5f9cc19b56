//! CLIP's text clean-up and word splitting, matching transformers' slow `CLIPTokenizer` when
//! ftfy is not installed, which is how diffusers' SD 1.5 pipeline usually runs it.

use regex::Regex;
use unicode_normalization_alignments::UnicodeNormalization;

/// The special tokens; the tokenizer maps a word equal to one of them straight to its id.
pub const SPECIAL_TOKENS: [&str; 2] = ["<|startoftext|>", "<|endoftext|>"];

/// Turns a prompt into the words that byte-pair encoding then splits further.
pub struct WordSplitter {
    /// Control, format, private-use and unassigned characters, and U+FFFD: all dropped.
    dropped: Regex,
    /// Characters the clean-up turns into a plain space.
    spaces: Regex,
    /// CLIP's word pattern.
    words: Regex,
}

impl WordSplitter {
    /// Compiles the patterns. They are constants that the unit tests compile, so no user
    /// input or file can make this fail.
    #[expect(
        clippy::expect_used,
        reason = "constant patterns, compiled by every test that builds a tokenizer"
    )]
    pub fn new() -> Self {
        let compile =
            |pattern: &str| Regex::new(pattern).expect("constant tokenizer pattern compiles");
        Self {
            dropped: compile(r"[[\p{C}\x{FFFD}]--[\t\n\r]]"),
            spaces: compile(r"[\t\n\r\p{Zs}]"),
            // Only the contractions match case-insensitively: lower-casing has already run,
            // and letting `(?i)` near `\p{L}` would widen it with case-fold partners.
            words: compile(
                r"<\|startoftext\|>|<\|endoftext\|>|(?i:'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+",
            ),
        }
    }

    /// Splits `text` into words. Special tokens written exactly (case and all) are cut out
    /// first and kept whole, as transformers' added-token split does before the clean-up.
    pub fn split(&self, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut rest = text;
        while let Some((start, special)) = next_special_token(rest) {
            self.split_plain(&rest[..start], &mut words);
            words.push(special.to_string());
            rest = &rest[start + special.len()..];
        }
        self.split_plain(rest, &mut words);
        words
    }

    fn split_plain(&self, text: &str, words: &mut Vec<String>) {
        let cleaned = self.clean(text);
        words.extend(
            self.words
                .find_iter(&cleaned)
                .map(|word| word.as_str().to_string()),
        );
    }

    /// The clean-up of transformers' `BasicTokenizer` as CLIP configures it: drop control
    /// characters, map spaces to ' ', set CJK ideographs apart, compose (NFC), split on
    /// whitespace and lower-case. Accents stay; punctuation is not split off.
    fn clean(&self, text: &str) -> String {
        let kept = self.dropped.replace_all(text, "");
        let spaced = self.spaces.replace_all(&kept, " ");
        let mut ideographs_apart = String::with_capacity(spaced.len());
        for c in spaced.chars() {
            if is_cjk_ideograph(c) {
                ideographs_apart.push(' ');
                ideographs_apart.push(c);
                ideographs_apart.push(' ');
            } else {
                ideographs_apart.push(c);
            }
        }
        let composed: String = ideographs_apart.nfc().map(|(c, _)| c).collect();
        composed
            .split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Default for WordSplitter {
    fn default() -> Self {
        Self::new()
    }
}

/// The first special token in `text`, with its byte offset.
fn next_special_token(text: &str) -> Option<(usize, &'static str)> {
    SPECIAL_TOKENS
        .iter()
        .filter_map(|token| text.find(token).map(|start| (start, *token)))
        .min()
}

/// The CJK Unified Ideographs blocks (and their extensions A–E and the compatibility
/// blocks) that `BasicTokenizer` treats as one word each. Kana and Hangul are not among them.
fn is_cjk_ideograph(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x2_0000..=0x2_A6DF
            | 0x2_A700..=0x2_B73F
            | 0x2_B740..=0x2_B81F
            | 0x2_B820..=0x2_CEAF
            | 0xF900..=0xFAFF
            | 0x2_F800..=0x2_FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_contractions_digits_and_punctuation() {
        assert_eq!(
            WordSplitter::new().split("It'S 42 cats!!"),
            vec!["it", "'s", "4", "2", "cats", "!!"]
        );
    }

    #[test]
    fn combining_marks_end_a_word_and_ideographs_stand_alone() {
        let splitter = WordSplitter::new();
        // The virama (U+094D) and the vowel sign (U+0947) are marks, not letters: each
        // ends the letter run and stands as a word of its own.
        assert_eq!(
            splitter.split("नमस्ते"),
            vec!["नमस", "\u{94d}", "त", "\u{947}"]
        );
        assert_eq!(splitter.split("一只猫cat"), vec!["一", "只", "猫", "cat"]);
        // Decomposed accents are composed before splitting.
        assert_eq!(splitter.split("CAFE\u{301}"), vec!["café"]);
    }

    #[test]
    fn drops_control_characters_and_keeps_exact_special_tokens() {
        let splitter = WordSplitter::new();
        assert_eq!(splitter.split("a\u{200b}b\u{0}\tc"), vec!["ab", "c"]);
        assert_eq!(splitter.split("!<|endoftext|>"), vec!["!", "<|endoftext|>"]);
        assert_eq!(
            splitter.split("!<|ENDOFTEXT|>"),
            vec!["!<|", "endoftext", "|>"]
        );
    }
}
