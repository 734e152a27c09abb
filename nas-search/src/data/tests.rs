//! Tests of the data module on the real files shipped in `data/` and on corrupted copies of them.

use super::cifar::{CIFAR_IMAGE_BYTES, CifarKind, load_cifar_dir};
use super::digits::{load_digits_csv, parse_digits_csv};
use super::idx::{load_idx_dir, load_idx_pair, parse_idx};
use super::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn shipped(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(rel)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

const TRAIN_IMAGES: &str = "fashion-mnist/train-4k-images-idx3-ubyte.gz";
const TRAIN_LABELS: &str = "fashion-mnist/train-4k-labels-idx1-ubyte.gz";
const TEST_IMAGES: &str = "fashion-mnist/t10k-1k-images-idx3-ubyte.gz";
const TEST_LABELS: &str = "fashion-mnist/t10k-1k-labels-idx1-ubyte.gz";

// ---------------------------------------------------------------- real files

#[test]
fn embedded_fashion_has_the_documented_contents() {
    let s = fashion_mnist_embedded().unwrap();
    assert_eq!(s.train.len(), 4000);
    assert_eq!(s.test.len(), 1000);
    assert_eq!(s.train.shape(), (1, 28, 28));
    assert_eq!(s.train.num_classes(), 10);
    assert_eq!(s.train.class_names()[9], "Ankle boot");
    // Values decoded independently (Python gzip + struct) from the shipped files.
    assert_eq!(&s.train.labels()[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(&s.test.labels()[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(
        s.train.class_counts(),
        vec![373, 440, 404, 409, 395, 391, 400, 413, 380, 395]
    );
    let first_sum: f32 = s.train.image(0).unwrap().iter().map(|v| v * 255.0).sum();
    assert!((first_sum - 76247.0).abs() < 0.5, "{first_sum}");
    let total: f64 = s
        .train
        .images()
        .iter()
        .map(|&v| (v * 255.0).round() as f64)
        .sum();
    assert_eq!(total, 228303707.0);
    let total_test: f64 = s
        .test
        .images()
        .iter()
        .map(|&v| (v * 255.0).round() as f64)
        .sum();
    assert_eq!(total_test, 58034149.0);
    assert!(s.train.images().iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(s.valid.is_none() && s.normalization.is_none());
}

#[test]
fn embedded_fashion_equals_the_files_read_from_disk() {
    let from_disk = "fashion:".to_string() + shipped("fashion-mnist").to_str().unwrap();
    let disk = from_disk.parse::<DataSpec>().unwrap().load().unwrap();
    let emb = DataSpec::FashionEmbedded.load().unwrap();
    assert_eq!(disk.train.images(), emb.train.images());
    assert_eq!(disk.train.labels(), emb.train.labels());
    assert_eq!(disk.test.labels(), emb.test.labels());
    assert_eq!(disk.train.name(), "fashion-mnist");
    assert_eq!(emb.train.name(), "fashion-mnist-embedded");
}

#[test]
fn idx_reads_uncompressed_files_too() {
    let dir = tempfile::tempdir().unwrap();
    for (rel, name) in [
        (TRAIN_IMAGES, "train-images-idx3-ubyte"),
        (TRAIN_LABELS, "train-labels-idx1-ubyte"),
        (TEST_IMAGES, "t10k-images-idx3-ubyte"),
        (TEST_LABELS, "t10k-labels-idx1-ubyte"),
    ] {
        std::fs::write(dir.path().join(name), gunzip(&shipped(rel))).unwrap();
    }
    let plain = load_idx_dir(dir.path(), "mnist").unwrap();
    let emb = fashion_mnist_embedded().unwrap();
    assert_eq!(plain.train.images(), emb.train.images());
    assert_eq!(plain.test.images(), emb.test.images());
}

/// A training-only directory whose files are not named `train-...` (like
/// `mnist-train-first10k-*`) loads, with its last sixth held out as the test set.
#[test]
fn idx_training_only_directory_holds_out_a_test_set() {
    let dir = tempfile::tempdir().unwrap();
    for (rel, name) in [
        (TRAIN_IMAGES, "mnist-train-first4k-images-idx3-ubyte.gz"),
        (TRAIN_LABELS, "mnist-train-first4k-labels-idx1-ubyte.gz"),
    ] {
        std::fs::copy(shipped(rel), dir.path().join(name)).unwrap();
    }
    let s = load_idx_dir(dir.path(), "mnist").unwrap();
    let emb = fashion_mnist_embedded().unwrap();
    assert_eq!((s.train.len(), s.test.len()), (3334, 666));
    let px = 28 * 28;
    assert_eq!(s.train.images(), &emb.train.images()[..3334 * px]);
    assert_eq!(s.test.images(), &emb.train.images()[3334 * px..]);
    // One test file without the other is still an error.
    std::fs::copy(
        shipped(TEST_IMAGES),
        dir.path().join("t10k-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let e = load_idx_dir(dir.path(), "mnist").unwrap_err().to_string();
    assert!(e.contains("test labels"), "{e}");
}

/// `idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS]` names the files explicitly.
#[test]
fn idx_files_by_name() {
    let emb = fashion_mnist_embedded().unwrap();
    let f = |rel: &str| shipped(rel).display().to_string();
    let four: DataSpec = format!(
        "idx:{},{},{},{}",
        f(TRAIN_IMAGES),
        f(TRAIN_LABELS),
        f(TEST_IMAGES),
        f(TEST_LABELS)
    )
    .parse()
    .unwrap();
    assert_eq!(four.to_string().parse::<DataSpec>().unwrap(), four);
    let s = four.load().unwrap();
    assert_eq!(s.train.images(), emb.train.images());
    assert_eq!(s.test.images(), emb.test.images());
    let two: DataSpec = format!("idx:{},{}", f(TRAIN_IMAGES), f(TRAIN_LABELS))
        .parse()
        .unwrap();
    let s = two.load().unwrap();
    assert_eq!((s.train.len(), s.test.len()), (3334, 666));
    for bad in ["idx", "idx:a", "idx:a,b,c", "idx:a,"] {
        let e = bad.parse::<DataSpec>().unwrap_err().to_string();
        assert!(e.contains("idx"), "{bad}: {e}");
    }
    let e = "idx:/nonexistent/i,/nonexistent/l"
        .parse::<DataSpec>()
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/i"), "{e}");
}

#[test]
fn embedded_digits_has_1797_rows_split_into_1438_and_359() {
    let s = digits_embedded().unwrap();
    assert_eq!(s.train.len() + s.test.len(), 1797);
    assert_eq!((s.train.len(), s.test.len()), (1438, 359));
    assert_eq!(s.train.shape(), (1, 8, 8));
    // First row of the CSV: 0,0,5,13,9,1,0,0,... label 0; last row ends with label 8.
    let first: Vec<f32> = s.train.image(0).unwrap()[..8]
        .iter()
        .map(|v| v * 16.0)
        .collect();
    assert_eq!(first, vec![0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]);
    assert_eq!(s.train.label(0), Some(0));
    assert_eq!(s.test.label(358), Some(8));
    assert_eq!(
        s.test.class_counts(),
        vec![35, 36, 34, 37, 37, 37, 37, 36, 33, 37]
    );
    let file = load_digits_csv(&shipped("digits/digits.csv.gz")).unwrap();
    assert_eq!(file.len(), 1797);
}

// ---------------------------------------------------------------- corrupted copies

/// Copies the four Fashion-MNIST files into a fresh directory, after `edit` may change them
/// (given the decompressed bytes; the result is written gzipped unless `raw` is set).
fn corrupted_dir(edit: impl Fn(&str, &mut Vec<u8>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for rel in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
        let mut bytes = gunzip(&shipped(rel));
        edit(name, &mut bytes);
        std::fs::write(dir.path().join(name), gzip(&bytes)).unwrap();
    }
    dir
}

fn msg(e: &DataError) -> String {
    e.to_string()
}

#[test]
fn truncated_gzip_stream_is_a_gzip_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(shipped(TRAIN_LABELS)).unwrap();
    let p = dir.path().join("cut.gz");
    std::fs::write(&p, &raw[..raw.len() / 2]).unwrap();
    let e = super::idx::read_idx(&p).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
    assert!(msg(&e).contains("cut.gz"), "{e}");
}

#[test]
fn truncated_idx_payload_is_reported_with_sizes() {
    let dir = corrupted_dir(|name, b| {
        if name.starts_with("train-4k-images") {
            b.truncate(b.len() - 100);
        }
    });
    let e = load_idx_dir(dir.path(), "x").unwrap_err();
    match &e {
        DataError::Truncated {
            file,
            expected,
            actual,
        } => {
            assert!(file.contains("train-4k-images"));
            assert_eq!(*expected, 16 + 4000 * 784);
            assert_eq!(*actual, 16 + 4000 * 784 - 100);
        }
        other => panic!("wrong error {other:?}"),
    }
    // Cut inside the header.
    let e = parse_idx(&[0, 0, 8, 3, 0, 0], "h").unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 16,
                actual: 6,
                ..
            }
        ),
        "{e:?}"
    );
    let e = parse_idx(&[0, 0], "h").unwrap_err();
    assert!(matches!(e, DataError::Truncated { .. }), "{e:?}");
}

#[test]
fn flipped_magic_is_bad_magic() {
    let dir = corrupted_dir(|name, b| {
        if name.starts_with("t10k-1k-labels") {
            b[0] ^= 0xff;
        }
    });
    let e = load_idx_dir(dir.path(), "x").unwrap_err();
    match &e {
        DataError::BadMagic { file, found, .. } => {
            assert!(file.contains("t10k-1k-labels"));
            assert_eq!(*found, 0xff00_0801);
        }
        other => panic!("wrong error {other:?}"),
    }
    assert!(msg(&e).contains("magic"));
    // Element type other than unsigned byte.
    let e = parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0], "f").unwrap_err();
    assert!(msg(&e).contains("0x0d"), "{e}");
    // An empty images file whose image dimensions overflow: an error, not a panic.
    let mut huge = vec![0, 0, 8, 4, 0, 0, 0, 0];
    for _ in 0..3 {
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    let images = parse_idx(&huge, "huge").unwrap();
    let labels = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 0], "l").unwrap();
    let e = super::idx::idx_to_dataset("x", &images, "huge", &labels, "l", 10).unwrap_err();
    assert!(msg(&e).contains("do not make 0 images"), "{e}");
}

#[test]
fn label_200_is_out_of_range_with_its_index() {
    let dir = corrupted_dir(|name, b| {
        if name.starts_with("train-4k-labels") {
            b[8 + 123] = 200;
        }
    });
    let e = load_idx_dir(dir.path(), "x").unwrap_err();
    match &e {
        DataError::LabelOutOfRange {
            file,
            index,
            label,
            num_classes,
        } => {
            assert!(file.contains("train-4k-labels"));
            assert_eq!((*index, *label, *num_classes), (123, 200, 10));
        }
        other => panic!("wrong error {other:?}"),
    }
}

#[test]
fn mismatched_counts_are_reported() {
    // Test labels with training images.
    let e = load_idx_pair("x", &shipped(TRAIN_IMAGES), &shipped(TEST_LABELS), 10).unwrap_err();
    match &e {
        DataError::CountMismatch { images, labels, .. } => {
            assert_eq!((*images, *labels), (4000, 1000))
        }
        other => panic!("wrong error {other:?}"),
    }
    assert!(msg(&e).contains("train-4k-images") && msg(&e).contains("t10k-1k-labels"));
    // A header whose count was edited (payload then too short for it).
    let dir = corrupted_dir(|name, b| {
        if name.starts_with("t10k-1k-labels") {
            b[4..8].copy_from_slice(&999u32.to_be_bytes());
            b.truncate(8 + 999);
        }
    });
    let e = load_idx_dir(dir.path(), "x").unwrap_err();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                images: 1000,
                labels: 999,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn trailing_bytes_and_wrong_rank_are_format_errors() {
    let mut b = gunzip(&shipped(TEST_LABELS));
    b.push(0);
    assert!(matches!(parse_idx(&b, "t"), Err(DataError::Format { .. })));
    let labels = parse_idx(&gunzip(&shipped(TEST_LABELS)), "l").unwrap();
    let e = super::idx::idx_to_dataset("x", &labels, "l", &labels, "l", 10).unwrap_err();
    assert!(msg(&e).contains("dimensions"), "{e}");
}

#[test]
fn missing_paths_and_files_are_named() {
    let e = "mnist:/no/such/dir"
        .parse::<DataSpec>()
        .unwrap()
        .load()
        .unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }));
    assert!(msg(&e).contains("/no/such/dir"));
    let e = load_digits_csv(Path::new("/no/such/file.csv")).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }));
    let dir = tempfile::tempdir().unwrap();
    let e = load_idx_dir(dir.path(), "x").unwrap_err();
    assert!(matches!(e, DataError::MissingFile { .. }), "{e:?}");
    assert!(msg(&e).contains("training images"));
}

// ---------------------------------------------------------------- digits CSV

fn digits_text() -> String {
    String::from_utf8(gunzip(&shipped("digits/digits.csv.gz"))).unwrap()
}

fn edit_line(text: &str, line: usize, f: impl Fn(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<String> = lines[line].split(',').map(String::from).collect();
    f(&mut fields);
    lines[line] = fields.join(",");
    lines.join("\n")
}

#[test]
fn digits_csv_plain_and_gzip_agree() {
    let text = digits_text();
    let a = parse_digits_csv(text.as_bytes(), "plain").unwrap();
    let b = parse_digits_csv(&gzip(text.as_bytes()), "gz").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 1797);
}

#[test]
fn digits_csv_errors_name_the_line() {
    let text = digits_text();
    let short = edit_line(&text, 4, |f| {
        f.remove(3);
    });
    let e = parse_digits_csv(short.as_bytes(), "d.csv").unwrap_err();
    assert!(
        msg(&e).contains("d.csv") && msg(&e).contains("line 5"),
        "{e}"
    );
    assert!(msg(&e).contains("64 values, but line 1 has 65"), "{e}");

    let big = edit_line(&text, 9, |f| f[10] = "17".into());
    let e = parse_digits_csv(big.as_bytes(), "d.csv").unwrap_err();
    assert!(
        msg(&e).contains("line 10") && msg(&e).contains("outside 0..=16"),
        "{e}"
    );

    let label = edit_line(&text, 0, |f| f[64] = "10".into());
    let e = parse_digits_csv(label.as_bytes(), "d.csv").unwrap_err();
    assert!(
        msg(&e).contains("line 1") && msg(&e).contains("label 10"),
        "{e}"
    );

    let nan = edit_line(&text, 2, |f| f[0] = "x".into());
    let e = parse_digits_csv(nan.as_bytes(), "d.csv").unwrap_err();
    assert!(msg(&e).contains("not a number"), "{e}");

    let e = parse_digits_csv(b"1,2,3\n", "d.csv").unwrap_err();
    assert!(msg(&e).contains("3 values"), "{e}");
    let e = parse_digits_csv(b"\n\n", "d.csv").unwrap_err();
    assert!(msg(&e).contains("no data rows"), "{e}");
}

// ---------------------------------------------------------------- CIFAR format

/// Builds CIFAR records from real Fashion-MNIST pixels: three consecutive 28x28 images become the
/// red, green and blue planes, each zero-padded by 2 pixels to 32x32.
fn cifar_records(kind: CifarKind, start: usize, n: usize) -> (Vec<u8>, Vec<u8>, Vec<usize>) {
    let images = gunzip(&shipped(TRAIN_IMAGES));
    let labels = gunzip(&shipped(TRAIN_LABELS));
    let mut out = Vec::new();
    let mut pixels = Vec::new();
    let mut labs = Vec::new();
    for k in start..start + n {
        let label = labels[8 + k];
        match kind {
            CifarKind::Cifar10 => out.push(label),
            CifarKind::Cifar100 => {
                out.push(label / 5);
                out.push(label * 9 + 3); // a fine label up to 84
            }
        }
        labs.push(match kind {
            CifarKind::Cifar10 => label as usize,
            CifarKind::Cifar100 => (label * 9 + 3) as usize,
        });
        for ch in 0..3 {
            let src = &images[16 + (3 * k + ch) * 784..16 + (3 * k + ch + 1) * 784];
            for y in 0..32 {
                for x in 0..32 {
                    let v = if (2..30).contains(&y) && (2..30).contains(&x) {
                        src[(y - 2) * 28 + (x - 2)]
                    } else {
                        0
                    };
                    out.push(v);
                    pixels.push(v);
                }
            }
        }
    }
    (out, pixels, labs)
}

fn write_cifar10(dir: &Path, per_file: usize) -> (Vec<u8>, Vec<usize>) {
    let mut all_pixels = Vec::new();
    let mut all_labels = Vec::new();
    for i in 1..=5 {
        let (rec, px, l) = cifar_records(CifarKind::Cifar10, (i - 1) * per_file, per_file);
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), rec).unwrap();
        all_pixels.extend(px);
        all_labels.extend(l);
    }
    let (rec, _, _) = cifar_records(CifarKind::Cifar10, 500, 3);
    std::fs::write(dir.join("test_batch.bin"), rec).unwrap();
    (all_pixels, all_labels)
}

#[test]
fn cifar10_directory_parses_correctly_structured_records() {
    let dir = tempfile::tempdir().unwrap();
    let (pixels, labels) = write_cifar10(dir.path(), 4);
    let spec: DataSpec = format!("cifar10:{}", dir.path().display()).parse().unwrap();
    let s = spec.load().unwrap();
    assert_eq!((s.train.len(), s.test.len()), (20, 3));
    assert_eq!(s.train.shape(), (3, 32, 32));
    assert_eq!(s.train.num_classes(), 10);
    assert_eq!(s.train.labels(), &labels[..]);
    let expect: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    assert_eq!(s.train.images(), &expect[..]);
    assert_eq!(s.train.class_names()[0], "airplane");
}

#[test]
fn cifar10_in_archive_subdirectory_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&sub).unwrap();
    write_cifar10(&sub, 2);
    let s = load_cifar_dir(dir.path(), CifarKind::Cifar10).unwrap();
    assert_eq!(s.train.len(), 10);
}

#[test]
fn cifar10_bad_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 2);
    // Truncated: one byte short of the last record.
    let p = dir.path().join("data_batch_3.bin");
    let mut b = std::fs::read(&p).unwrap();
    b.pop();
    std::fs::write(&p, &b).unwrap();
    let e = load_cifar_dir(dir.path(), CifarKind::Cifar10).unwrap_err();
    match &e {
        DataError::Truncated {
            file,
            expected,
            actual,
        } => {
            assert!(file.contains("data_batch_3.bin"));
            assert_eq!((*expected, *actual), (2 * 3073, 2 * 3073 - 1));
        }
        other => panic!("wrong error {other:?}"),
    }
    // Label out of range in the second record.
    b.push(0);
    b[3073] = 10;
    std::fs::write(&p, &b).unwrap();
    let e = load_cifar_dir(dir.path(), CifarKind::Cifar10).unwrap_err();
    assert!(
        matches!(
            &e,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{e:?}"
    );
    // A missing batch.
    std::fs::remove_file(dir.path().join("data_batch_5.bin")).unwrap();
    let e = load_cifar_dir(dir.path(), CifarKind::Cifar10).unwrap_err();
    assert!(matches!(e, DataError::MissingFile { .. }));
    assert!(msg(&e).contains("data_batch_5.bin"), "{e}");
    // Empty file.
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let e = super::cifar::parse_cifar_records(
        &[],
        "e.bin",
        CifarKind::Cifar10,
        &mut images,
        &mut labels,
    )
    .unwrap_err();
    assert!(msg(&e).contains("e.bin"));
}

#[test]
fn cifar100_uses_the_fine_label() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, pixels, labels) = cifar_records(CifarKind::Cifar100, 0, 6);
    assert_eq!(rec.len(), 6 * (2 + CIFAR_IMAGE_BYTES));
    std::fs::write(dir.path().join("train.bin"), &rec).unwrap();
    std::fs::write(
        dir.path().join("test.bin"),
        &rec[..2 * (2 + CIFAR_IMAGE_BYTES)],
    )
    .unwrap();
    let s: Splits = format!("cifar100:{}", dir.path().display())
        .parse::<DataSpec>()
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(s.train.num_classes(), 100);
    assert_eq!(s.train.labels(), &labels[..]);
    assert!(labels.iter().any(|&l| l >= 10));
    assert_eq!(
        s.train.images()[..3072],
        pixels[..3072]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(s.test.len(), 2);
    // Coarse label 20 is out of range.
    let mut bad = rec.clone();
    bad[0] = 20;
    std::fs::write(dir.path().join("train.bin"), &bad).unwrap();
    let e = load_cifar_dir(dir.path(), CifarKind::Cifar100).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                label: 20,
                num_classes: 20,
                ..
            }
        ),
        "{e:?}"
    );
}

// ---------------------------------------------------------------- splits and normalisation

fn channel_moments(d: &Dataset) -> Vec<(f64, f64)> {
    let (c, h, w) = d.shape();
    (0..c)
        .map(|ch| {
            let vals: Vec<f64> = d
                .images()
                .chunks_exact(c * h * w)
                .flat_map(|img| img[ch * h * w..(ch + 1) * h * w].iter().map(|&v| v as f64))
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / vals.len() as f64;
            (m, v.sqrt())
        })
        .collect()
}

#[test]
fn normalisation_gives_zero_mean_unit_std_on_the_training_part() {
    let s = fashion_mnist_embedded().unwrap().prepare(0.1, 3).unwrap();
    let (m, sd) = channel_moments(&s.train)[0];
    assert!(m.abs() < 1e-4 && (sd - 1.0).abs() < 1e-4, "{m} {sd}");
    let norm = s.normalization.as_ref().unwrap();
    // Fashion-MNIST's pixel mean is about 0.286 and std about 0.353.
    assert!((norm.mean[0] - 0.286).abs() < 0.02, "{:?}", norm);
    assert!((norm.std[0] - 0.353).abs() < 0.02, "{:?}", norm);
    // Held-out parts use the training statistics: close to, not exactly, standard.
    let (mv, sv) = channel_moments(s.valid.as_ref().unwrap())[0];
    assert!(mv.abs() < 0.1 && (sv - 1.0).abs() < 0.1 && mv != 0.0);
    let (mt, _) = channel_moments(&s.test)[0];
    assert!(mt.abs() < 0.1);
    // Normalising twice is refused.
    assert!(s.normalize().is_err());

    // Three channels (CIFAR-format built from Fashion-MNIST planes): each standardised separately.
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 6);
    let s = load_cifar_dir(dir.path(), CifarKind::Cifar10)
        .unwrap()
        .normalize()
        .unwrap();
    let n = s.normalization.as_ref().unwrap();
    assert_eq!(n.mean.len(), 3);
    assert!(n.mean[0] != n.mean[1]);
    for (m, sd) in channel_moments(&s.train) {
        assert!(m.abs() < 1e-4 && (sd - 1.0).abs() < 1e-4, "{m} {sd}");
    }
}

#[test]
fn validation_split_is_seeded_disjoint_and_complete() {
    let raw = digits_embedded().unwrap();
    let n = raw.train.len();
    let a = raw.clone().with_validation(0.2, 11).unwrap();
    let b = raw.clone().with_validation(0.2, 11).unwrap();
    let c = raw.clone().with_validation(0.2, 12).unwrap();
    let va = a.valid.as_ref().unwrap();
    assert_eq!(va.len(), (0.2 * n as f64).round() as usize);
    assert_eq!(a.train.len() + va.len(), n);
    assert_eq!(a, b);
    assert_ne!(a.valid, c.valid);
    // Every original example ends up in exactly one part (compare as byte strings of pixels).
    let key = |img: &[f32]| img.iter().map(|v| (v * 16.0) as u8).collect::<Vec<u8>>();
    let mut orig: Vec<Vec<u8>> = raw.train.images().chunks(64).map(key).collect();
    let mut parts: Vec<Vec<u8>> = a
        .train
        .images()
        .chunks(64)
        .chain(va.images().chunks(64))
        .map(key)
        .collect();
    orig.sort();
    parts.sort();
    assert_eq!(orig, parts);
    assert!(raw.clone().with_validation(1.0, 0).is_err());
    assert!(raw.clone().with_validation(-0.1, 0).is_err());
    assert!(raw.clone().with_validation(0.0, 0).unwrap().valid.is_none());
    assert!(
        raw.clone()
            .with_validation(0.2, 0)
            .unwrap()
            .with_validation(0.2, 0)
            .is_err()
    );
}

// ---------------------------------------------------------------- augmentation

#[test]
fn flip_twice_is_identity_and_flip_mirrors_rows() {
    let s = fashion_mnist_embedded().unwrap();
    let img = s.train.image(7).unwrap().to_vec();
    let mut x = img.clone();
    hflip(&mut x, (1, 28, 28));
    assert_ne!(x, img);
    assert_eq!(x[5 * 28], img[5 * 28 + 27]);
    hflip(&mut x, (1, 28, 28));
    assert_eq!(x, img);
}

#[test]
fn shift_is_a_zero_padded_crop() {
    let shape = (2, 3, 4);
    let src: Vec<f32> = (1..=24).map(|v| v as f32).collect();
    let mut dst = vec![-1.0; 24];
    shift(&src, &mut dst, shape, 0, 0);
    assert_eq!(dst, src);
    shift(&src, &mut dst, shape, 1, -1);
    // dst[c, y, x] = src[c, y + 1, x - 1]
    #[rustfmt::skip]
    let expect = vec![
        0.0, 5.0, 6.0, 7.0,    0.0, 9.0, 10.0, 11.0,    0.0, 0.0, 0.0, 0.0,
        0.0, 17.0, 18.0, 19.0, 0.0, 21.0, 22.0, 23.0,   0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(dst, expect);
}

#[test]
fn augmentation_keeps_shape_and_is_a_shift_then_maybe_a_flip() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 2);
    let s = load_cifar_dir(dir.path(), CifarKind::Cifar10).unwrap();
    let shape = s.train.shape();
    let aug = Augment::cifar();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut scratch = Vec::new();
    let mut seen_flip = false;
    let mut seen_shift = false;
    for i in 0..s.train.len() {
        let img = s.train.image(i).unwrap();
        let mut x = img.to_vec();
        aug.apply(&mut x, shape, &mut rng, &mut scratch);
        assert_eq!(x.len(), img.len());
        // Find the (dy, dx, flip) that explains the output.
        let mut found = false;
        for dy in -4..=4isize {
            for dx in -4..=4isize {
                let mut y = vec![0.0; img.len()];
                shift(img, &mut y, shape, dy, dx);
                if y == x {
                    found = true;
                    seen_shift |= dy != 0 || dx != 0;
                }
                hflip(&mut y, shape);
                if y == x {
                    found = true;
                    seen_flip = true;
                }
            }
        }
        assert!(found, "image {i} is not a shifted/flipped copy");
    }
    assert!(seen_flip && seen_shift);
    let mut x = s.train.image(0).unwrap().to_vec();
    Augment::none().apply(&mut x, shape, &mut rng, &mut scratch);
    assert_eq!(x, s.train.image(0).unwrap());
}

// ---------------------------------------------------------------- batches

fn epoch_batches(b: &mut Batches<'_>) -> Vec<(Vec<f32>, Vec<usize>)> {
    let mut out = Vec::new();
    while let Some(batch) = b.next_batch() {
        out.push((batch.images.to_vec(), batch.labels.to_vec()));
    }
    out
}

/// Identifies examples by their (unique) pixel content for the digits training set.
fn example_ids(d: &Dataset) -> std::collections::HashMap<Vec<u32>, usize> {
    let mut m = std::collections::HashMap::new();
    for i in 0..d.len() {
        m.insert(d.image(i).unwrap().iter().map(|v| v.to_bits()).collect(), i);
    }
    m
}

#[test]
fn batches_cover_each_example_once_per_epoch() {
    let d = fashion_mnist_embedded()
        .unwrap()
        .train
        .subset(&(0..1000).collect::<Vec<_>>())
        .unwrap();
    let ids = example_ids(&d);
    assert_eq!(ids.len(), 1000, "test assumes distinct images");
    let mut b = d.batches(&BatchOptions::new(64).seed(9)).unwrap();
    assert_eq!(b.num_batches(), 16);
    assert_eq!(b.len(), 16);
    let mut orders = Vec::new();
    for _epoch in 0..2 {
        let batches = epoch_batches(&mut b);
        assert_eq!(batches.len(), 16);
        assert_eq!(batches.last().unwrap().1.len(), 1000 - 15 * 64);
        let mut seen = Vec::new();
        for (imgs, labels) in &batches {
            assert_eq!(imgs.len(), labels.len() * 784);
            for (img, &l) in imgs.chunks(784).zip(labels) {
                let id = ids[&img.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()];
                assert_eq!(d.label(id), Some(l), "image and label travel together");
                seen.push(id);
            }
        }
        let set: HashSet<usize> = seen.iter().copied().collect();
        assert_eq!((seen.len(), set.len()), (1000, 1000));
        assert_ne!(seen, (0..1000).collect::<Vec<_>>(), "shuffled");
        orders.push(seen);
        b.next_epoch();
    }
    assert_ne!(orders[0], orders[1], "each epoch has its own order");

    let mut b = d.batches(&BatchOptions::new(64).drop_last(true)).unwrap();
    let batches = epoch_batches(&mut b);
    assert_eq!(batches.len(), 15);
    assert!(batches.iter().all(|(_, l)| l.len() == 64));

    let mut b = d.batches(&BatchOptions::new(300).shuffle(false)).unwrap();
    let first = b.next_batch().unwrap();
    assert_eq!(first.labels, &d.labels()[..300]);
    assert!(d.batches(&BatchOptions::new(0)).is_err());
}

#[test]
fn same_seed_same_batches_and_iterator_agrees_with_next_batch() {
    let d = digits_embedded().unwrap().prepare(0.0, 0).unwrap().train;
    let opts = BatchOptions::new(50)
        .seed(42)
        .augment(Some(Augment { pad: 2, flip: true }));
    let a = epoch_batches(&mut d.batches(&opts).unwrap());
    let b = epoch_batches(&mut d.batches(&opts).unwrap());
    assert_eq!(a, b);
    let c = epoch_batches(&mut d.batches(&opts.clone().seed(43)).unwrap());
    assert_ne!(a, c);
    let it: Vec<_> = d.batches(&opts).unwrap().collect();
    assert_eq!(a, it);
    // Recycled buffers are written into instead of new ones.
    let mut bs = d.batches(&opts).unwrap();
    let first = bs.next().unwrap();
    let ptr = first.0.as_ptr();
    bs.recycle(first);
    let second = bs.next().unwrap();
    assert_eq!(second.0.as_ptr(), ptr);
    assert_eq!(second, a[1]);
}

// ---------------------------------------------------------------- specs

#[test]
fn spec_parsing_accepts_the_documented_forms() {
    let p = |s: &str| s.parse::<DataSpec>();
    assert_eq!(p("fashion").unwrap(), DataSpec::FashionEmbedded);
    assert_eq!(p("fashion-embedded").unwrap(), DataSpec::FashionEmbedded);
    assert_eq!(DataSpec::default(), DataSpec::FashionEmbedded);
    assert_eq!(p("digits").unwrap(), DataSpec::DigitsEmbedded);
    assert_eq!(p("mnist:/a/b").unwrap(), DataSpec::Mnist("/a/b".into()));
    assert_eq!(
        p("fashion:rel/dir").unwrap(),
        DataSpec::Fashion("rel/dir".into())
    );
    assert_eq!(p("cifar10:/c").unwrap(), DataSpec::Cifar10("/c".into()));
    assert_eq!(p("CIFAR100:/c").unwrap(), DataSpec::Cifar100("/c".into()));
    assert_eq!(
        p("digits:x.csv.gz").unwrap(),
        DataSpec::Digits("x.csv.gz".into())
    );
    for s in [
        "fashion-embedded",
        "digits",
        "mnist:/a",
        "fashion:/b",
        "cifar10:/c",
        "cifar100:/d",
        "digits:e",
    ] {
        assert_eq!(p(&p(s).unwrap().to_string()).unwrap(), p(s).unwrap(), "{s}");
    }
    if let Some(home) = std::env::var_os("HOME") {
        assert_eq!(
            p("mnist:~/m").unwrap(),
            DataSpec::Mnist(PathBuf::from(home).join("m"))
        );
    }
    let e = p("imagenet:/x").unwrap_err();
    assert!(matches!(e, DataError::Spec { .. }));
    assert!(
        msg(&e).contains("unknown data set kind \"imagenet\""),
        "{e}"
    );
    assert!(msg(&p("mnist").unwrap_err()).contains("mnist:DIR"));
    assert!(msg(&p("cifar10:").unwrap_err()).contains("empty path"));
    assert!(p("fashion-embedded:/x").is_err());
    assert!(p("").is_err());
}

// ---------------------------------------------------------------- properties

mod props {
    use super::super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A data set whose example `i` has every pixel equal to `i` (so batches reveal indices).
    fn indexed(n: usize, shape: (usize, usize, usize)) -> Dataset {
        let per = shape.0 * shape.1 * shape.2;
        let images = (0..n)
            .flat_map(|i| std::iter::repeat_n(i as f32, per))
            .collect();
        let labels = (0..n).map(|i| i % 3).collect();
        Dataset::new("indexed", shape, 3, images, labels).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn batches_partition_each_epoch(n in 1usize..200, b in 1usize..40, drop_last: bool, seed: u64, shuffle: bool) {
            let d = indexed(n, (1, 2, 2));
            let opts = BatchOptions::new(b).seed(seed).drop_last(drop_last).shuffle(shuffle);
            let mut it = d.batches(&opts).unwrap();
            let expected_batches = if drop_last { n / b } else { n.div_ceil(b) };
            prop_assert_eq!(it.num_batches(), expected_batches);
            for _epoch in 0..2 {
                let mut seen = Vec::new();
                let mut count = 0;
                while let Some(batch) = it.next_batch() {
                    count += 1;
                    prop_assert!(batch.len() <= b && !batch.is_empty());
                    if drop_last { prop_assert_eq!(batch.len(), b); }
                    prop_assert_eq!(batch.images.len(), batch.len() * 4);
                    for (img, &l) in batch.images.chunks(4).zip(batch.labels) {
                        let i = img[0] as usize;
                        prop_assert!(img.iter().all(|&v| v == i as f32));
                        prop_assert_eq!(l, i % 3);
                        seen.push(i);
                    }
                }
                prop_assert_eq!(count, expected_batches);
                let covered = if drop_last { n / b * b } else { n };
                prop_assert_eq!(seen.len(), covered);
                let mut sorted = seen.clone();
                sorted.sort_unstable();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), covered, "no example twice in an epoch");
                if !shuffle {
                    prop_assert_eq!(seen, (0..covered).collect::<Vec<_>>());
                }
                it.next_epoch();
            }
        }

        #[test]
        fn flip_is_an_involution_and_shift_inverts_on_the_interior(
            c in 1usize..4, h in 1usize..9, w in 1usize..9, dy in -3isize..4, dx in -3isize..4, seed: u64,
        ) {
            let shape = (c, h, w);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let img: Vec<f32> = (0..c * h * w).map(|_| rand::Rng::random_range(&mut rng, 0.5f32..1.0)).collect();
            let mut f = img.clone();
            hflip(&mut f, shape);
            hflip(&mut f, shape);
            prop_assert_eq!(&f, &img);
            let mut a = vec![0.0; img.len()];
            let mut back = vec![0.0; img.len()];
            shift(&img, &mut a, shape, dy, dx);
            shift(&a, &mut back, shape, -dy, -dx);
            for ch in 0..c {
                for y in 0..h as isize {
                    for x in 0..w as isize {
                        let v = back[ch * h * w + y as usize * w + x as usize];
                        let inside = (0..h as isize).contains(&(y - dy)) && (0..w as isize).contains(&(x - dx));
                        // Pixels that went out of the image come back as the zero padding.
                        let want = if inside { img[ch * h * w + y as usize * w + x as usize] } else { 0.0 };
                        prop_assert_eq!(v, want);
                    }
                }
            }
            // Augmentation never changes the length and keeps every value from the image or 0.
            let mut aug = img.clone();
            let mut scratch = Vec::new();
            Augment { pad: 3, flip: true }.apply(&mut aug, shape, &mut rng, &mut scratch);
            prop_assert_eq!(aug.len(), img.len());
            prop_assert!(aug.iter().all(|v| *v == 0.0 || img.contains(v)));
        }
    }
}
