//! CLIP's text normalisation and word splitting, matching transformers 5's `CLIPTokenizer` (the
//! `tokenizers`-backed one, which diffusers' SD 1.5 pipeline and ComfyUI run today).

use regex::Regex;
use unicode_normalization_alignments::UnicodeNormalization;

/// The special tokens; written exactly in a prompt, each stands for its own id.
pub const SPECIAL_TOKENS: [&str; 2] = ["<|startoftext|>", "<|endoftext|>"];

/// Oniguruma's `\s`, which the `tokenizers` patterns use: the ASCII controls 9 to 13, NEL and
/// the Unicode space, line and paragraph separators (the same set as `regex`'s `\s`, spelt out
/// so that the match does not hang on two engines agreeing).
const SPACE: &str = r"\t\n\x0B\x0C\r\x{85}\p{Zs}\p{Zl}\p{Zp}";

/// One unit of a prompt for byte-pair encoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Word {
    /// A special token written exactly in the prompt: its own id, no byte pairs.
    Special(&'static str),
    /// A word that byte-pair encoding splits further.
    Text(String),
}

/// Turns a prompt into the words that byte-pair encoding then splits further.
pub struct WordSplitter {
    /// A run of white space, which the normaliser turns into one space.
    spaces: Regex,
    /// CLIP's word pattern; what it does not match (white space) is dropped.
    words: Regex,
    /// GPT-2's pattern, which the byte-level step applies to each word. Its white-space
    /// branches are left out: no word holds white space.
    byte_level_words: Regex,
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
            spaces: compile(&format!("[{SPACE}]+")),
            words: compile(&format!(
                r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{{L}}+|\p{{N}}|[^{SPACE}\p{{L}}\p{{N}}]+"
            )),
            byte_level_words: compile(&format!(
                r"'s|'t|'re|'ve|'m|'ll|'d|\p{{L}}+|\p{{N}}+|[^{SPACE}\p{{L}}\p{{N}}]+"
            )),
        }
    }

    /// Splits `text` into words. Special tokens written exactly (case and all) are cut out
    /// of the raw text first and kept whole, as `tokenizers` does with added tokens that are
    /// not normalised; a special token that only normalisation spells out is plain text.
    pub fn split(&self, text: &str) -> Vec<Word> {
        let mut words = Vec::new();
        let mut rest = text;
        while let Some((start, special)) = next_special_token(rest) {
            self.split_plain(&rest[..start], &mut words);
            words.push(Word::Special(special));
            rest = &rest[start + special.len()..];
        }
        self.split_plain(rest, &mut words);
        words
    }

    fn split_plain(&self, text: &str, words: &mut Vec<Word>) {
        let normalized = self.normalize(text);
        for word in self.words.find_iter(&normalized) {
            words.extend(
                self.byte_level_words
                    .find_iter(word.as_str())
                    .map(|part| Word::Text(part.as_str().to_string())),
            );
        }
    }

    /// The normaliser: compose (NFC), turn each run of white space into one space, then
    /// lower-case character by character (so a final Σ becomes σ, not ς). Control characters
    /// stay, and CJK ideographs are not set apart.
    fn normalize(&self, text: &str) -> String {
        let composed: String = text.nfc().map(|(c, _)| c).collect();
        self.spaces
            .replace_all(&composed, " ")
            .chars()
            .flat_map(char::to_lowercase)
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(words: &[&str]) -> Vec<Word> {
        words.iter().map(|w| Word::Text(w.to_string())).collect()
    }

    #[test]
    fn splits_contractions_digits_and_punctuation() {
        assert_eq!(
            WordSplitter::new().split("It'S 42 cats!!"),
            texts(&["it", "'s", "4", "2", "cats", "!!"])
        );
    }

    #[test]
    fn combining_marks_end_a_word_and_ideographs_run_together() {
        let splitter = WordSplitter::new();
        // The virama (U+094D) and the vowel sign (U+0947) are marks, not letters: each
        // ends the letter run and stands as a word of its own.
        assert_eq!(
            splitter.split("नमस्ते"),
            texts(&["नमस", "\u{94d}", "त", "\u{947}"])
        );
        assert_eq!(splitter.split("一只猫cat"), texts(&["一只猫cat"]));
        // Decomposed accents are composed before splitting.
        assert_eq!(splitter.split("CAFE\u{301}"), texts(&["café"]));
        // Lower-casing goes character by character: no final sigma.
        assert_eq!(splitter.split("ΟΔΟΣ"), texts(&["οδοσ"]));
    }

    #[test]
    fn keeps_control_characters_and_exact_special_tokens() {
        let splitter = WordSplitter::new();
        assert_eq!(
            splitter.split("a\u{200b}b\u{0}\tc"),
            texts(&["a", "\u{200b}", "b", "\u{0}", "c"])
        );
        assert_eq!(
            splitter.split("!<|endoftext|>"),
            vec![Word::Text("!".into()), Word::Special("<|endoftext|>")]
        );
        // Lower-casing spells the token out, but only as text.
        assert_eq!(
            splitter.split("<|ENDOFTEXT|>"),
            texts(&["<|", "endoftext", "|>"])
        );
    }
}
