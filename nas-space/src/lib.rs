//! Search-space algebra for neural architecture search.
//!
//! Every space implements [`SearchSpace`]: sampling, mutation, crossover, neighbours, validation,
//! canonical forms, exact sizes, encodings, distances and a text format. Architectures are plain
//! values (`Clone + Eq + Hash`) with serde JSON support. This crate depends on no other crate of
//! the workspace, so a strategy can be tested against a synthetic objective with no tensors at all.
//!
//! | module | space | `name()` | architecture | size | canonical key |
//! | --- | --- | --- | --- | --- | --- |
//! | [`nb201`] | NAS-Bench-201 cell | `"nb201"` | [`nb201::Nb201Cell`] (6 edge ops) | 15,625 | algebraic normal form: **4,930** classes (the benchmark's own `isomorph_class`: 6,466) |
//! | [`darts`] | DARTS normal + reduction cell | `"darts"` | [`darts::DartsGenotype`] | 1,076,746,950,455,072,400 (edge pairs unordered) | edges of each node sorted |
//! | [`nb101`] | NAS-Bench-101 style DAG | `"nb101"` | [`nb101::Nb101Arch`] (matrix + ops) | 423,624 isomorphism classes (enumerated) | exact isomorphism code of the pruned graph |
//! | [`chain`] | chain / macro space | `"chain"` | [`chain::ChainArch`] (layers) | `sum_l K^l` | the text form |
//! | [`rnn`] | DARTS recurrent cell | `"rnn"` | [`rnn::RnnGenotype`] (8 nodes: input + activation) | 2,642,411,520 | nodes renumbered in the canonical preorder of the cell's tree |
//!
//! Common conventions: a mutation changes one decision (or one edge) and always returns a valid
//! architecture; crossover is uniform per decision; `neighbours` lists every architecture one
//! move away in a deterministic order; `distance` counts moves (NB201: Hamming on the 6 ops;
//! DARTS: per node, the cheaper edge matching; NB101: Hamming on the 7-vertex decisions; chain:
//! edit distance; RNN: Hamming on the 16 decisions); `one_hot` (the trait default) concatenates one-hot decisions, and NB201 and
//! NB101 add an adjacency encoding and the BANANAS path encoding as inherent methods. Every
//! parser returns [`SpaceError::Parse`] with a byte offset and a message on malformed input, and
//! never panics. Randomness comes in as `&mut dyn RngCore`, so a seeded
//! `rand_chacha::ChaCha8Rng` makes every draw reproducible.
//!
//! ```
//! use nas_space::SearchSpace;
//! use nas_space::nb201::Nb201Space;
//! use rand::SeedableRng;
//!
//! let space = Nb201Space;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let a = space.sample(&mut rng);
//! let b = space.mutate(&a, &mut rng);
//! assert_eq!(space.distance(&a, &b), 1);
//! assert_eq!(space.parse(&space.to_text(&b)).unwrap(), b);
//! ```

#![warn(missing_docs)]

use rand::RngCore;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use std::hash::Hash;

mod error;
pub use error::SpaceError;

pub mod chain;
pub mod darts;
pub mod nb101;
pub mod nb201;
pub mod rnn;
mod text;

/// A search space: the set of architectures a strategy chooses from and the moves between them.
///
/// Methods take `&mut dyn RngCore` so that spaces stay object-safe in their randomness and every
/// strategy can drive them from its own seeded, serialisable generator.
pub trait SearchSpace: Send + Sync {
    /// One architecture of the space.
    type Arch: Clone + Eq + Hash + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// A short, stable name of the space (`"nb201"`, `"darts"`, ...), used in checkpoints.
    fn name(&self) -> &'static str;

    /// Draws an architecture uniformly at random over the space's categorical decisions.
    fn sample(&self, rng: &mut dyn RngCore) -> Self::Arch;

    /// A random one-step change of `arch` (one decision, or one edge, changed); always valid.
    fn mutate(&self, arch: &Self::Arch, rng: &mut dyn RngCore) -> Self::Arch;

    /// A random recombination of two parents; always valid.
    fn crossover(&self, a: &Self::Arch, b: &Self::Arch, rng: &mut dyn RngCore) -> Self::Arch;

    /// Every architecture one step away from `arch`, in a deterministic order.
    fn neighbours(&self, arch: &Self::Arch) -> Vec<Self::Arch>;

    /// `Ok(())` when `arch` belongs to the space, otherwise what is wrong with it.
    fn validate(&self, arch: &Self::Arch) -> Result<(), SpaceError>;

    /// A canonical key: equal for architectures the space considers equivalent.
    fn canonical(&self, arch: &Self::Arch) -> String;

    /// The exact number of architectures, where finite and known in closed form.
    fn size(&self) -> Option<u128>;

    /// The number of choices of each categorical decision (for policy-based strategies).
    fn decisions(&self) -> Vec<usize>;

    /// The choice index of each decision for `arch`, in the order of [`SearchSpace::decisions`].
    fn encode_decisions(&self, arch: &Self::Arch) -> Vec<usize>;

    /// The architecture for one choice per decision; an error if the choices are out of range or
    /// do not make a valid architecture.
    fn decode_decisions(&self, choices: &[usize]) -> Result<Self::Arch, SpaceError>;

    /// A one-hot vector per decision, concatenated.
    fn one_hot(&self, arch: &Self::Arch) -> Vec<f32> {
        let sizes = self.decisions();
        let choices = self.encode_decisions(arch);
        let mut v = vec![0.0; sizes.iter().sum()];
        let mut offset = 0;
        for (n, c) in sizes.iter().zip(choices) {
            v[offset + c] = 1.0;
            offset += n;
        }
        v
    }

    /// The features performance predictors read (BANANAS' encoding): the path encoding where
    /// the space has one (NAS-Bench-201, NAS-Bench-101), otherwise [`SearchSpace::one_hot`].
    /// Every architecture of a space gets a vector of the same length.
    fn features(&self, arch: &Self::Arch) -> Vec<f32> {
        self.one_hot(arch)
    }

    /// The number of single-step moves needed to turn `a` into `b` (a metric on the space).
    fn distance(&self, a: &Self::Arch, b: &Self::Arch) -> usize;

    /// The space's own text form of `arch`.
    fn to_text(&self, arch: &Self::Arch) -> String;

    /// Parses the space's own text form; malformed input gives an error saying where and what.
    fn parse(&self, text: &str) -> Result<Self::Arch, SpaceError>;
}
