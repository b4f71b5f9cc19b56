"""Makes tests/fixtures/tokenizer_corpus.json: prompts and the 77 token ids that transformers 5's
CLIPTokenizer (the `tokenizers`-backed one, which diffusers' StableDiffusionPipeline and ComfyUI
users get today) gives for them with the SD 1.5 tokenizer files in
tests/fixtures/models/sd15/tokenizer.

Run with transformers 5.x installed (see /work/shared/reference/README.md for the versions):
    python tests/tools/make_tokenizer_corpus.py
The prompts come from a seeded generator, so a rerun writes the same file."""
import json
import os
import random

import tokenizers
import transformers
from transformers import CLIPTokenizer

assert transformers.__version__.startswith("5."), "needs transformers 5.x (the fast CLIPTokenizer)"

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")

# Fragments in many scripts; the random prompts are built from these.
FRAGMENTS = [
    # Latin, mixed case, contractions
    "a photo of a cat", "Portrait", "masterpiece", "best quality", "ULTRA-DETAILED", "8k", "HDR",
    "don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "CAN'T", "IT'S", "We'Re",
    "McDonald's", "CamelCaseWord", "o'clock", "rock'n'roll", "'s", "'", "''", "ain't",
    "blurry", "lowres", "bad anatomy", "extra fingers", "jpeg artifacts", "watermark",
    # accents, precomposed and decomposed
    "café", "naïve", "Ångström", "résumé", "Straße", "ÉCOLE", "São Paulo", "Kraków",
    "İstanbul", "ΟΔΟΣ", "Ελληνικά", "Москва", "ПРИВЕТ мир", "cafe\u0301", "A\u030angstrom",
    "n\u0303o", "Ǆemal", "ﬁnance", "Æsir", "Œuvre", "ǅ", "ß", "ẞ", "Ωmega",
    # CJK, kana, hangul, fullwidth
    "猫", "一只可爱的猫", "风景画", "東京タワー", "ひらがな", "カタカナ", "한국어 사진", "고양이",
    "ＡＢＣ１２３", "，。！", "「引用」", "漢字かな混じり文", "〜", "ｶﾀｶ李", "㐀㐁", "丽",
    # Devanagari, Arabic, Hebrew, Thai, others with combining marks
    "नमस्ते", "हिन्दी चित्र", "बिल्ली", "क्षत्रिय", "مرحبا", "قطة جميلة", "بِسْمِ", "שָׁלוֹם", "עברית",
    "แมว", "ภาษาไทย", "ગુજરાતી", "தமிழ்", "ქართული", "Հայերեն", "አማርኛ",
    # emoji and symbols
    "🐱", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇯🇵", "❤️", "✨", "★☆", "™", "©", "→", "∞", "°C",
    # numbers
    "1024", "3.14", "٣٤٥", "१२३", "½", "²", "Ⅻ", "①", "1,000,000", "0x1F", "v1.5", "512x768",
    # punctuation
    "!!!", "...", "—", "«»", "¿qué?", "¡hola!", "@#$%", "::", '"quoted"', "'single'", "a/b\\c",
    "<>", "~~", "^_^", ":-)", "&amp;", "--no", "#hashtag", "under_score", "semi;colon",
    # A1111 weight syntax
    "(word:1.2)", "((masterpiece))", "[a|b]", "[cat:dog:0.5]", "{x}", "\\(escaped\\)",
    "<lora:foo:0.8>", "BREAK", "(red hair:1.4), (blue eyes:0.9)", "[[low quality]]", "(a|b|c)",
    # special tokens in the text
    "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "!<|endoftext|>", "<|endoftext|>!",
    "x<|startoftext|>y", "<|endoftext", "|endoftext|>",
    # control, format and odd spaces
    "\x00", "\x07", "\x1b[31m", "\u200b", "\u200d", "\ufeff", "\ufffd", "\ue000", "\u00ad",
    "\u00a0", "\u3000", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\u2003",
]
SEPARATORS = [" ", " ", " ", ", ", ",", "", "\t", "\n", "\r\n", "  ", "\u00a0", "|", ". "]

# Hand-picked prompts that a random mix might miss.
FIXED = [
    "", " ", "\t\n", "a", "A", "a photo of a cat", "A PHOTO OF A CAT",
    "it's 42 cats!!", "IT'S", "'S'T'RE'VE'M'LL'D", "'ll've'd",
    "Ǆ", "İ", "ΣΑΣ ΟΔΟΣ", "ς", "K", "ſ", "'ſ",
    "e\u0301", "\u0301", "\u0301abc", "\u0300\u0301\u0302",
    "猫猫猫", "a猫b", "1猫2", "猫!",
    "<|endoftext|>", "<|startoftext|><|endoftext|>", "a <|endoftext|> b", "<|EndOfText|>",
    "\x00\x00\x00", "\ufffd\ufffd", "a\u200bb", "a\u00adb",
    "(masterpiece:1.2), best quality, [cat|dog], {blue}",
    "cat " * 100, "猫" * 100, "🐱" * 80, "1" * 200, "!" * 300, "a" * 500, "ab " * 40,
    "word, " * 40, "नमस्ते " * 30, "مرحبا " * 30,
    "𝕬𝖇𝖈 𝟙𝟚𝟛", "ℌ𝔢𝔩𝔩𝔬", "Ⓐⓑⓒ", "ⅰⅱⅲ", "₂", "ǈ",
    "line one\nline two\r\nline three\ttabbed",
]


def random_prompt(rng):
    count = rng.choice([1, 2, 3, 5, 8, 13, 21, 40])
    parts = []
    for _ in range(count):
        fragment = rng.choice(FRAGMENTS)
        if rng.random() < 0.2:
            fragment = fragment.upper()
        elif rng.random() < 0.1:
            fragment = fragment.title()
        parts.append(fragment)
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts[:-1])


def main():
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(FIXTURES, "models", "sd15", "tokenizer"))
    assert len(tokenizer.get_vocab()) == 49408
    rng = random.Random(20261130)
    prompts = list(FIXED) + list(FRAGMENTS)
    while len(prompts) < 640:
        prompts.append(random_prompt(rng))
    cases = []
    for prompt in prompts:
        # The call diffusers' StableDiffusionPipeline.encode_prompt makes.
        ids = tokenizer(
            prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True
        ).input_ids
        cases.append({"prompt": prompt, "ids": ids})
    path = os.path.join(FIXTURES, "tokenizer_corpus.json")
    with open(path, "w", encoding="utf-8") as out:
        versions = (json.dumps(transformers.__version__), json.dumps(tokenizers.__version__))
        out.write('{"transformers": %s, "tokenizers": %s, "cases": [\n' % versions)
        out.write(",\n".join(json.dumps(case, separators=(",", ":")) for case in cases))
        out.write("\n]}\n")
    print(f"wrote {len(cases)} prompts to {path}")


if __name__ == "__main__":
    main()
