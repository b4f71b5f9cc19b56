//! The CLIP byte-pair-encoding tokenizer, with its merges embedded so it works offline.

use std::collections::HashMap;

use super::clip_words::{SPECIAL_TOKENS, WordSplitter};

/// Token id of `<|startoftext|>`.
pub const BOS_TOKEN: u32 = 49406;
/// Token id of `<|endoftext|>`, also used for padding.
pub const EOS_TOKEN: u32 = 49407;
/// Sequence length of SD 1.5's text encoder.
pub const MAX_TOKENS: usize = 77;

const MERGES: &str = include_str!("../../resources/clip_merges.txt");
/// The OpenAI file holds more merges than the model uses; CLIP keeps the first ones.
const MERGES_USED: usize = 49152 - 256 - 2;

/// CLIP's tokenizer: text → 77 token ids.
pub struct ClipTokenizer {
    byte_chars: [char; 256],
    vocab: HashMap<String, u32>,
    merge_ranks: HashMap<(String, String), usize>,
    splitter: WordSplitter,
}

impl ClipTokenizer {
    /// Builds the tokenizer from the embedded merges (the vocabulary follows from them).
    pub fn new() -> Self {
        let byte_chars = byte_to_unicode();
        let merges: Vec<(String, String)> = MERGES
            .lines()
            .skip(1)
            .take(MERGES_USED)
            .filter_map(|line| {
                let (a, b) = line.split_once(' ')?;
                Some((a.to_string(), b.to_string()))
            })
            .collect();
        // The vocabulary lists printable bytes first (in byte order), then the others.
        let mut ordered: Vec<char> = byte_chars.to_vec();
        ordered.sort_by_key(|c| u32::from(*c));
        let mut words: Vec<String> = ordered.iter().map(|c| c.to_string()).collect();
        words.extend(ordered.iter().map(|c| format!("{c}</w>")));
        words.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        words.extend(SPECIAL_TOKENS.iter().map(|token| token.to_string()));
        let vocab = words
            .into_iter()
            .enumerate()
            .map(|(id, word)| (word, id as u32))
            .collect();
        let merge_ranks = merges
            .into_iter()
            .enumerate()
            .map(|(rank, pair)| (pair, rank))
            .collect();
        Self {
            byte_chars,
            vocab,
            merge_ranks,
            splitter: WordSplitter::new(),
        }
    }

    /// Number of entries in the vocabulary (49408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Token ids with BOS and EOS, without padding, truncated to 77.
    pub fn encode_unpadded(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![BOS_TOKEN];
        for word in self.splitter.split(text) {
            // A special token's text is its own vocabulary entry, not byte pairs.
            if SPECIAL_TOKENS.contains(&word.as_str()) {
                ids.extend(self.vocab.get(&word));
                continue;
            }
            let bytes: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
            ids.extend(self.bpe(&bytes));
        }
        ids.truncate(MAX_TOKENS - 1);
        ids.push(EOS_TOKEN);
        ids
    }

    /// Token ids padded with EOS to exactly 77, as SD 1.5's pipeline feeds them.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = self.encode_unpadded(text);
        ids.resize(MAX_TOKENS, EOS_TOKEN);
        ids
    }

    /// Applies the merges to one pre-tokenized word (already mapped to byte chars).
    fn bpe(&self, word: &str) -> Vec<u32> {
        let mut parts: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = parts.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = parts
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    let rank = self.merge_ranks.get(&(pair[0].clone(), pair[1].clone()))?;
                    Some((*rank, i))
                })
                .min();
            let Some((_, first)) = best else { break };
            let (left, right) = (parts[first].clone(), parts[first + 1].clone());
            // Merge every occurrence of the best pair, left to right, as CLIP does.
            let mut merged = Vec::with_capacity(parts.len());
            let mut i = 0;
            while i < parts.len() {
                if i + 1 < parts.len() && parts[i] == left && parts[i + 1] == right {
                    merged.push(format!("{left}{right}"));
                    i += 2;
                } else {
                    merged.push(parts[i].clone());
                    i += 1;
                }
            }
            parts = merged;
        }
        parts
            .iter()
            .filter_map(|part| self.vocab.get(part).copied())
            .collect()
    }
}

impl Default for ClipTokenizer {
    fn default() -> Self {
        Self::new()
    }
}

/// GPT-2's reversible byte → printable character table.
fn byte_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (u32::from('!')..=u32::from('~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut next_extra = 256u32;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            let code = next_extra;
            next_extra += 1;
            code
        };
        table[b as usize] = char::from_u32(code).unwrap_or('?');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_known_prompt() {
        let tokenizer = ClipTokenizer::new();
        assert_eq!(
            tokenizer.encode_unpadded("a photo of a cat"),
            vec![49406, 320, 1125, 539, 320, 2368, 49407]
        );
        assert_eq!(tokenizer.vocab_size(), 49408);
    }

    #[test]
    fn pads_and_truncates_to_77() {
        let tokenizer = ClipTokenizer::new();
        assert_eq!(tokenizer.encode("").len(), MAX_TOKENS);
        let long = "cat ".repeat(200);
        let ids = tokenizer.encode(&long);
        assert_eq!(ids.len(), MAX_TOKENS);
        assert_eq!(ids[76], EOS_TOKEN);
    }
}
