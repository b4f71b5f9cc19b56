//! The CLIP byte-pair-encoding tokenizer, with its merges embedded so it works offline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::LazyLock;

use super::clip_words::{SPECIAL_TOKENS, Word, WordSplitter};

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
    /// Each merge by the ids of its two parts: its rank (lower merges first) and the
    /// id of what it makes.
    merges: HashMap<(u32, u32), (usize, u32)>,
    splitter: WordSplitter,
}

/// The one tokenizer of the process: every model load and pad-token lookup shares it
/// instead of parsing the 49k merges again.
static SHARED: LazyLock<ClipTokenizer> = LazyLock::new(ClipTokenizer::new);

impl ClipTokenizer {
    /// The tokenizer, built the first time it is asked for.
    pub fn shared() -> &'static Self {
        &SHARED
    }

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
        let vocab: HashMap<String, u32> = words
            .into_iter()
            .enumerate()
            .map(|(id, word)| (word, id as u32))
            .collect();
        let merges = merges
            .iter()
            .enumerate()
            .filter_map(|(rank, (a, b))| {
                let parts = (*vocab.get(a)?, *vocab.get(b)?);
                Some((parts, (rank, *vocab.get(&format!("{a}{b}"))?)))
            })
            .collect();
        Self {
            byte_chars,
            vocab,
            merges,
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
            match word {
                Word::Special(token) => ids.extend(self.vocab.get(token)),
                Word::Text(word) => {
                    let bytes: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
                    ids.extend(self.bpe(&bytes));
                }
            }
        }
        ids.truncate(MAX_TOKENS - 1);
        ids.push(EOS_TOKEN);
        ids
    }

    /// Token ids padded with EOS to exactly 77, as SD 1.5's pipeline feeds them.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_padded(text, EOS_TOKEN)
    }

    /// Token ids padded with `pad` to exactly 77 (SDXL's second tokenizer pads with `!`).
    pub fn encode_padded(&self, text: &str, pad: u32) -> Vec<u32> {
        let mut ids = self.encode_unpadded(text);
        ids.resize(MAX_TOKENS, pad);
        ids
    }

    /// The id of a whole token as the vocabulary spells it (`!`, `<|endoftext|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Applies the merges to one pre-tokenized word (already mapped to byte chars): the
    /// lowest-ranked pair first, equal pairs left to right, as CLIP and `tokenizers` do.
    /// A heap of candidate pairs keeps a long word (a run of CJK text, a pasted blob)
    /// at n log n rather than n².
    fn bpe(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        let last = chars.len().saturating_sub(1);
        let mut symbols: Vec<u32> = chars
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let text = if i == last {
                    format!("{c}</w>")
                } else {
                    c.to_string()
                };
                self.vocab.get(&text).copied()
            })
            .collect();
        // A linked list over the symbols: a merge keeps the left one and unlinks the right.
        let count = symbols.len();
        let mut next: Vec<usize> = (1..=count).collect();
        let mut prev: Vec<Option<usize>> = (0..count).map(|i| i.checked_sub(1)).collect();
        let mut candidates = BinaryHeap::new();
        for left in 1..count {
            self.push_pair(&mut candidates, &symbols, left - 1, left);
        }
        while let Some(Reverse((rank, left))) = candidates.pop() {
            let right = next[left];
            // Skip a pair that an earlier merge has already changed.
            let Some(&(current, merged)) = symbols
                .get(right)
                .and_then(|r| self.merges.get(&(symbols[left], *r)))
            else {
                continue;
            };
            if current != rank {
                continue;
            }
            symbols[left] = merged;
            next[left] = next[right];
            next[right] = usize::MAX;
            let after = next[left];
            if after < count {
                prev[after] = Some(left);
                self.push_pair(&mut candidates, &symbols, left, after);
            }
            if let Some(before) = prev[left] {
                self.push_pair(&mut candidates, &symbols, before, left);
            }
        }
        let mut ids = Vec::new();
        let mut at = 0;
        while at < count {
            ids.push(symbols[at]);
            at = next[at];
        }
        ids
    }

    /// Queues the pair at `left`, `right` if some merge joins it.
    fn push_pair(
        &self,
        candidates: &mut BinaryHeap<Reverse<(usize, usize)>>,
        symbols: &[u32],
        left: usize,
        right: usize,
    ) {
        if let Some(&(rank, _)) = self.merges.get(&(symbols[left], symbols[right])) {
            candidates.push(Reverse((rank, left)));
        }
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

    /// A long word of varied letters (a pasted hash, say) is merged whole and cut to 77
    /// ids. (The merge queue keeps it to milliseconds, where rescanning every pair after
    /// each merge took 26 s; speed is for benchmarks, so only the result is checked.)
    #[test]
    fn a_long_word_of_varied_letters_is_merged_and_cut_to_77() {
        let mut state = 1u64;
        let word: String = (0..20_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                char::from(b'a' + ((state >> 33) % 26) as u8)
            })
            .collect();
        let ids = ClipTokenizer::new().encode(&word);
        assert_eq!(ids.len(), MAX_TOKENS);
        assert_eq!((ids[0], ids[76]), (BOS_TOKEN, EOS_TOKEN));
        assert!(ids[1..76].iter().all(|&id| id != EOS_TOKEN));
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
