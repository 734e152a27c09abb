//! Character-level text corpora for language modelling: the embedded Shakespeare corpus and
//! any UTF-8 text file.
//!
//! A [`TextCorpus`] is three streams of character ids (training, validation, test) over a
//! [`Vocab`] built from the **training part only**; a character of the validation or test
//! part that the training part never shows maps to the one unknown symbol, id
//! [`Vocab::UNKNOWN`].
//!
//! - [`TextSpec::Shakespeare`] (`shakespeare`, the default): about 1 MB of Shakespeare
//!   compiled into the library, split **by work** (seven works for training, one for
//!   validation, one for test; `data/shakespeare/README.md` lists them), so no scene leaks
//!   between the parts.
//! - [`TextSpec::File`] (`text:FILE`, optionally gzipped): one file cut into its first 90%
//!   (training), the next 5% (validation) and the last 5% (test) of characters.
//!
//! Bad input is a [`DataError`] naming the file: a missing or empty file, a binary file (a NUL
//! byte), invalid UTF-8 (with the byte offset), or a part shorter than one sequence.
//!
//! ```
//! use nas_search::data::text::TextSpec;
//! let corpus = "shakespeare".parse::<TextSpec>()?.load(64)?;
//! assert_eq!(corpus.train.len(), 842_204);
//! assert_eq!(corpus.vocab.decode(&corpus.train[..6]), "HAMLET");
//! # Ok::<(), nas_search::data::DataError>(())
//! ```

use super::error::{DataError, Result};
use super::io::{maybe_gunzip, read_file};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

const SHAKESPEARE_TRAIN: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/shakespeare/train.txt.gz"
));
const SHAKESPEARE_VALID: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/shakespeare/valid.txt.gz"
));
const SHAKESPEARE_TEST: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/shakespeare/test.txt.gz"
));

/// Name of the embedded Shakespeare corpus.
pub const SHAKESPEARE_NAME: &str = "shakespeare-embedded";

/// The characters of a corpus and their ids: id 0 is the unknown symbol, ids `1..` are the
/// training part's distinct characters in increasing code-point order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
    ids: HashMap<char, u32>,
}

impl Vocab {
    /// The id of the unknown symbol (characters the training part never shows).
    pub const UNKNOWN: u32 = 0;
    /// The character printed for the unknown symbol by [`Vocab::decode`].
    pub const UNKNOWN_CHAR: char = '\u{FFFD}';

    /// The vocabulary of `text`: its distinct characters, sorted, after the unknown symbol.
    pub fn from_text(text: &str) -> Vocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        chars.insert(0, Vocab::UNKNOWN_CHAR);
        let ids = chars
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &c)| (c, i as u32))
            .collect();
        Vocab { chars, ids }
    }

    /// Number of symbols, the unknown symbol included.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Always false: the unknown symbol is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The id of `c` ([`Vocab::UNKNOWN`] for a character not in the vocabulary).
    pub fn id(&self, c: char) -> u32 {
        self.ids.get(&c).copied().unwrap_or(Vocab::UNKNOWN)
    }

    /// The ids of every character of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.chars().map(|c| self.id(c)).collect()
    }

    /// The text of `ids` (the unknown symbol and out-of-range ids print as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| {
                self.chars
                    .get(i as usize)
                    .copied()
                    .unwrap_or(Vocab::UNKNOWN_CHAR)
            })
            .collect()
    }

    /// The character of id `id`, if `id` is in range (id 0 gives U+FFFD).
    pub fn char(&self, id: u32) -> Option<char> {
        self.chars.get(id as usize).copied()
    }
}

/// A character-level corpus: training, validation and test streams of ids over one
/// vocabulary (built from the training part).
#[derive(Debug, Clone)]
pub struct TextCorpus {
    /// Where it came from: a path, or `shakespeare-embedded`.
    pub name: String,
    /// The vocabulary (from the training part).
    pub vocab: Vocab,
    /// The training stream.
    pub train: Vec<u32>,
    /// The validation stream (what searches read).
    pub valid: Vec<u32>,
    /// The test stream (reported, never optimised).
    pub test: Vec<u32>,
}

impl TextCorpus {
    /// A corpus from three texts, the vocabulary built from `train`; every part must hold at
    /// least `seq_len + 1` characters (one sequence and its last target).
    pub fn from_parts(
        name: &str,
        train: &str,
        valid: &str,
        test: &str,
        seq_len: usize,
    ) -> Result<TextCorpus> {
        let vocab = Vocab::from_text(train);
        let corpus = TextCorpus {
            name: name.to_string(),
            train: vocab.encode(train),
            valid: vocab.encode(valid),
            test: vocab.encode(test),
            vocab,
        };
        corpus.check_lengths(seq_len)?;
        Ok(corpus)
    }

    fn check_lengths(&self, seq_len: usize) -> Result<()> {
        if seq_len == 0 {
            return Err(DataError::InvalidArgument(
                "the sequence length must be at least 1".into(),
            ));
        }
        for (part, ids) in [
            ("training", &self.train),
            ("validation", &self.valid),
            ("test", &self.test),
        ] {
            if ids.len() < seq_len + 1 {
                return Err(DataError::Format {
                    file: self.name.clone(),
                    message: format!(
                        "the {part} part holds {} characters, fewer than one sequence of \
                         {seq_len} plus its next character; use a longer text or a shorter \
                         sequence",
                        ids.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Fraction of the validation and test characters that map to the unknown symbol.
    pub fn unknown_fraction(&self) -> f64 {
        let n = self.valid.len() + self.test.len();
        let unk = self
            .valid
            .iter()
            .chain(&self.test)
            .filter(|&&i| i == Vocab::UNKNOWN)
            .count();
        if n == 0 { 0.0 } else { unk as f64 / n as f64 }
    }
}

/// Checks that `bytes` (the contents of `file`) are non-empty UTF-8 text and returns it.
pub fn decode_text<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str> {
    let err = |message: String| DataError::Format {
        file: file.to_string(),
        message,
    };
    if bytes.is_empty() {
        return Err(err(
            "the file is empty; a text corpus needs characters".into()
        ));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(err(format!(
            "a NUL byte at offset {at}: this is a binary file, not UTF-8 text"
        )));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        err(format!(
            "invalid UTF-8 at byte {} (the text must be UTF-8 encoded)",
            e.valid_up_to()
        ))
    })
}

/// Reads `path` (optionally gzipped) as UTF-8 text and cuts it into the first 90%, the next 5%
/// and the last 5% of its characters (training, validation, test).
pub fn load_text_file(path: &Path, seq_len: usize) -> Result<TextCorpus> {
    let name = path.display().to_string();
    let raw = read_file(path)?;
    let bytes = maybe_gunzip(&raw, &name)?;
    let text = decode_text(&bytes, &name)?;
    let n = text.chars().count();
    let train_end = n * 9 / 10;
    let valid_end = n * 19 / 20;
    let byte_at = |k: usize| text.char_indices().nth(k).map_or(text.len(), |(b, _)| b);
    let (b1, b2) = (byte_at(train_end), byte_at(valid_end));
    TextCorpus::from_parts(&name, &text[..b1], &text[b1..b2], &text[b2..], seq_len)
}

/// The embedded Shakespeare corpus (see `data/shakespeare/README.md`): 842,204 training,
/// 98,440 validation and 88,210 test characters.
pub fn shakespeare_embedded(seq_len: usize) -> Result<TextCorpus> {
    let part = |bytes: &'static [u8], which: &str| -> Result<String> {
        let file = format!("embedded:shakespeare/{which}.txt.gz");
        let raw = maybe_gunzip(bytes, &file)?;
        Ok(decode_text(&raw, &file)?.to_string())
    };
    let train = part(SHAKESPEARE_TRAIN, "train")?;
    let valid = part(SHAKESPEARE_VALID, "valid")?;
    let test = part(SHAKESPEARE_TEST, "test")?;
    TextCorpus::from_parts(SHAKESPEARE_NAME, &train, &valid, &test, seq_len)
}

/// Which text corpus to load: `shakespeare` (embedded, the default) or `text:FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TextSpec {
    /// The Shakespeare corpus compiled into the library.
    #[default]
    Shakespeare,
    /// A UTF-8 text file (optionally gzipped), split 90/5/5.
    File(PathBuf),
}

impl TextSpec {
    /// The accepted forms, for help texts and errors.
    pub const HELP: &'static str = "shakespeare (embedded, the default: ~1 MB, split by work) | \
text:FILE (any UTF-8 text file, optionally .gz: first 90% training, next 5% validation, \
last 5% test)";

    /// Loads the corpus; every part must hold at least `seq_len + 1` characters.
    pub fn load(&self, seq_len: usize) -> Result<TextCorpus> {
        match self {
            TextSpec::Shakespeare => shakespeare_embedded(seq_len),
            TextSpec::File(p) => load_text_file(p, seq_len),
        }
    }
}

impl FromStr for TextSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let err = |message: String| DataError::Spec {
            spec: s.to_string(),
            message,
        };
        match s.split_once(':') {
            None if matches!(s.trim(), "shakespeare" | "shakespeare-embedded") => {
                Ok(TextSpec::Shakespeare)
            }
            Some(("text", "")) => Err(err("empty path after \"text:\"".into())),
            Some(("text", p)) => Ok(TextSpec::File(match p.strip_prefix("~/") {
                Some(rest) => std::env::var_os("HOME")
                    .map_or_else(|| PathBuf::from(p), |h| PathBuf::from(h).join(rest)),
                None => PathBuf::from(p),
            })),
            _ => Err(err(format!(
                "not a text corpus; expected one of: {}",
                TextSpec::HELP
            ))),
        }
    }
}

impl fmt::Display for TextSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextSpec::Shakespeare => f.write_str("shakespeare"),
            TextSpec::File(p) => write!(f, "text:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn embedded_shakespeare_has_the_documented_parts() {
        let c = shakespeare_embedded(64).unwrap();
        assert_eq!(
            (c.train.len(), c.valid.len(), c.test.len()),
            (842_204, 98_440, 88_210)
        );
        // 73 distinct characters in the training works, plus the unknown symbol.
        assert_eq!(c.vocab.len(), 74);
        assert_eq!(c.vocab.decode(&c.train[..6]), "HAMLET");
        assert_eq!(c.vocab.decode(&c.valid[..11]), "THE TEMPEST");
        assert_eq!(c.vocab.decode(&c.test[..20]), "THE COMEDY OF ERRORS");
        assert!(c.train.iter().all(|&i| i != Vocab::UNKNOWN));
        // The validation and test works hold 4 characters the training works lack (`4`,
        // `5`, `{`), counted independently with Python.
        let unknown = c
            .valid
            .iter()
            .chain(&c.test)
            .filter(|&&i| i == Vocab::UNKNOWN);
        assert_eq!(unknown.count(), 4);
    }

    #[test]
    fn vocabulary_comes_from_the_training_part_and_unknowns_map_to_one_symbol() {
        let c = TextCorpus::from_parts("t", "abcab", "abz!", "cq", 1).unwrap();
        assert_eq!(c.vocab.len(), 4);
        assert_eq!(c.train, vec![1, 2, 3, 1, 2]);
        assert_eq!(c.valid, vec![1, 2, 0, 0]);
        assert_eq!(c.test, vec![3, 0]);
        assert_eq!(c.vocab.decode(&c.valid), "ab\u{FFFD}\u{FFFD}");
        assert_eq!(c.unknown_fraction(), 3.0 / 6.0);
    }

    #[test]
    fn a_file_splits_90_5_5_by_characters_multibyte_included() {
        let dir = tempfile::tempdir().unwrap();
        // 200 characters, some of them two or three bytes long.
        let text: String = (0..200).map(|i| ['a', 'é', '€', 'b'][i % 4]).collect();
        let p = write(&dir, "t.txt", text.as_bytes());
        let c = load_text_file(&p, 4).unwrap();
        assert_eq!((c.train.len(), c.valid.len(), c.test.len()), (180, 10, 10));
        assert_eq!(c.vocab.decode(&c.train[..4]), "aé€b");
        let spec: TextSpec = format!("text:{}", p.display()).parse().unwrap();
        assert_eq!(spec.load(4).unwrap().train, c.train);
    }

    #[test]
    fn bad_files_are_clear_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let short = "x".repeat(100);
        let cases: [(&str, &[u8], &str); 4] = [
            ("empty.txt", b"", "the file is empty"),
            ("bin.dat", b"abc\0\x01\x02def", "NUL byte at offset 3"),
            ("latin1.txt", b"caf\xe9 au lait", "invalid UTF-8 at byte 3"),
            (
                "short.txt",
                short.as_bytes(),
                "fewer than one sequence of 64",
            ),
        ];
        for (name, bytes, want) in cases {
            let p = write(&dir, name, bytes);
            let e = load_text_file(&p, 64).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
            assert!(e.contains(name), "{name}: {e}");
        }
        let missing = dir.path().join("nope.txt");
        let e = load_text_file(&missing, 8).unwrap_err().to_string();
        assert!(e.contains("nope.txt") && e.contains("no such file"), "{e}");
    }

    #[test]
    fn specs_parse_and_print() {
        assert_eq!(
            "shakespeare".parse::<TextSpec>().unwrap(),
            TextSpec::Shakespeare
        );
        let s: TextSpec = "text:/tmp/a.txt".parse().unwrap();
        assert_eq!(s, TextSpec::File("/tmp/a.txt".into()));
        assert_eq!(s.to_string(), "text:/tmp/a.txt");
        for bad in ["text:", "fashion", "txt:/a"] {
            let e = bad.parse::<TextSpec>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
