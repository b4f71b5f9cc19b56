//! Token ids equal to transformers 5's `CLIPTokenizer` (the `tokenizers`-backed one, as
//! diffusers' SD 1.5 pipeline calls it: truncated and padded to 77) on every prompt of
//! tests/fixtures/tokenizer_corpus.json, which tests/tools/make_tokenizer_corpus.py writes.

use minus::models::tokenizer::ClipTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    ids: Vec<u32>,
}

#[test]
fn every_corpus_prompt_gets_transformers_ids() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tokenizer_corpus.json"
    );
    let text = std::fs::read_to_string(path).expect("corpus fixture reads");
    let corpus: Corpus = serde_json::from_str(&text).expect("corpus fixture parses");
    assert!(
        corpus.cases.len() >= 500,
        "the corpus holds too few prompts"
    );
    let tokenizer = ClipTokenizer::new();
    let mismatches: Vec<(&Case, Vec<u32>)> = corpus
        .cases
        .iter()
        .map(|case| (case, tokenizer.encode(&case.prompt)))
        .filter(|(case, ids)| *ids != case.ids)
        .collect();
    let matched = corpus.cases.len() - mismatches.len();
    println!("{matched} of {} prompts match", corpus.cases.len());
    if let Some((case, ids)) = mismatches.first() {
        panic!(
            "{} of {} prompts differ; first {:?}:\n  ours:         {ids:?}\n  transformers: {:?}",
            mismatches.len(),
            corpus.cases.len(),
            case.prompt,
            case.ids
        );
    }
}
