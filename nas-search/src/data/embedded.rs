//! Small real data sets compiled into the library, so that `nas search` runs on a fresh machine
//! with no download: a Fashion-MNIST subset (first 4,000 training and 1,000 test images of the
//! Zalando Research data set, MIT licence) and the UCI digits (1,797 images, CC BY 4.0).
//! See `data/README.md` in the repository for sources and licences.

use super::dataset::Splits;
use super::digits::{digits_splits, parse_digits_csv};
use super::error::Result;
use super::idx::{idx_to_dataset, parse_idx};

/// Names of the ten Fashion-MNIST classes, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Names of the ten CIFAR-10 classes, by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Names of the ten digit classes, by label.
pub const DIGIT_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

macro_rules! shipped {
    ($rel:literal) => {
        (
            concat!("embedded:", $rel),
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/", $rel)) as &[u8],
        )
    };
}

const FASHION_TRAIN_IMAGES: (&str, &[u8]) = shipped!("fashion-mnist/train-4k-images-idx3-ubyte.gz");
const FASHION_TRAIN_LABELS: (&str, &[u8]) = shipped!("fashion-mnist/train-4k-labels-idx1-ubyte.gz");
const FASHION_TEST_IMAGES: (&str, &[u8]) = shipped!("fashion-mnist/t10k-1k-images-idx3-ubyte.gz");
const FASHION_TEST_LABELS: (&str, &[u8]) = shipped!("fashion-mnist/t10k-1k-labels-idx1-ubyte.gz");
const DIGITS_CSV: (&str, &[u8]) = shipped!("digits/digits.csv.gz");

/// Name of the embedded Fashion-MNIST subset.
pub const FASHION_EMBEDDED_NAME: &str = "fashion-mnist-embedded";

fn idx_pair(
    name: &str,
    images: (&str, &[u8]),
    labels: (&str, &[u8]),
) -> Result<super::dataset::Dataset> {
    let img = parse_idx(images.1, images.0)?;
    let lab = parse_idx(labels.1, labels.0)?;
    Ok(idx_to_dataset(name, &img, images.0, &lab, labels.0, 10)?
        .with_class_names(&FASHION_MNIST_CLASSES))
}

/// The embedded Fashion-MNIST subset: 4,000 training and 1,000 test images, 1x28x28, 10 classes,
/// pixels in `[0, 1]` (call [`Splits::prepare`] for a validation split and normalisation).
pub fn fashion_mnist_embedded() -> Result<Splits> {
    let train = idx_pair(
        FASHION_EMBEDDED_NAME,
        FASHION_TRAIN_IMAGES,
        FASHION_TRAIN_LABELS,
    )?;
    let test = idx_pair(
        FASHION_EMBEDDED_NAME,
        FASHION_TEST_IMAGES,
        FASHION_TEST_LABELS,
    )?;
    Splits::new(train, test)
}

/// The embedded UCI digits: 1,797 images, 1x8x8, 10 classes, cut into training (first 1,438) and
/// test (last 359) parts as [`super::digits::digits_splits`] says; pixels in `[0, 1]`.
pub fn digits_embedded() -> Result<Splits> {
    let all = parse_digits_csv(DIGITS_CSV.1, DIGITS_CSV.0)?.with_class_names(&DIGIT_CLASSES);
    digits_splits(all)
}
