//! Enumerates the NAS-Bench-101 style space and counts its isomorphism classes.
//!
//! Every valid graph in pruned form (2..=7 vertices, at most 9 edges, every vertex on an
//! input-to-output path) with every labelling of its interior vertices is hashed with
//! `Nb101Arch::iso_hash`; the number of distinct hashes is the number of unique graphs. The
//! published figure (Ying et al., ICML 2019) is 423,624.
//!
//! Run: `cargo run -p nas-space --release --example nb101_enumerate [max_vertices]`

use nas_space::nb101::Nb101Space;
use std::time::Instant;

fn main() {
    let max: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("max_vertices must be a number in 2..=7"))
        .unwrap_or(7);
    for n in 2..=max {
        let mut labelled = 0usize;
        Nb101Space::for_each_pruned_graph(n, |_| labelled += 1);
        let start = Instant::now();
        let unique = Nb101Space::count_unique_graphs(n);
        println!(
            "up to {n} vertices: {labelled} labelled pruned graphs, {unique} unique \
             (counted in {:.2} s)",
            start.elapsed().as_secs_f64()
        );
    }
}
