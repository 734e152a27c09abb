//! Speed of the search-space algebra: canonical forms, hashes, moves and parsers.
//!
//! Run: `cargo bench -p nas-space --bench space_ops`

use criterion::{Criterion, criterion_group, criterion_main};
use nas_space::SearchSpace;
use nas_space::chain::ChainSpace;
use nas_space::darts::{DARTS_V2, DartsGenotype, DartsSpace};
use nas_space::nb101::{Nb101Arch, Nb101Space};
use nas_space::nb201::{Nb201Cell, Nb201Space};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

fn nb201(c: &mut Criterion) {
    let cells: Vec<Nb201Cell> = Nb201Cell::all().collect();
    c.bench_function("nb201/normal_form all 15625", |b| {
        b.iter(|| {
            cells
                .iter()
                .map(|x| black_box(x).normal_form().len())
                .sum::<usize>()
        })
    });
    c.bench_function("nb201/isomorph_class all 15625", |b| {
        b.iter(|| {
            cells
                .iter()
                .map(|x| black_box(x).isomorph_class().len())
                .sum::<usize>()
        })
    });
    let text = cells[777].to_string();
    c.bench_function("nb201/parse", |b| {
        b.iter(|| Nb201Cell::parse(black_box(&text)))
    });
    c.bench_function("nb201/neighbours", |b| {
        b.iter(|| Nb201Space.neighbours(black_box(&cells[777])))
    });
}

fn darts(c: &mut Criterion) {
    let text = DARTS_V2.to_string();
    c.bench_function("darts/parse V2", |b| {
        b.iter(|| DartsGenotype::parse(black_box(&text)))
    });
    c.bench_function("darts/neighbours", |b| {
        b.iter(|| DartsSpace.neighbours(black_box(&DARTS_V2)))
    });
    c.bench_function("darts/relabel_key", |b| {
        b.iter(|| black_box(&DARTS_V2.normal).relabel_key())
    });
}

fn nb101(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let graphs: Vec<Nb101Arch> = (0..1000).map(|_| Nb101Space.sample(&mut rng)).collect();
    c.bench_function("nb101/iso_hash 1000 sampled", |b| {
        b.iter(|| {
            graphs
                .iter()
                .map(|g| black_box(g).iso_hash())
                .fold(0, u64::wrapping_add)
        })
    });
    c.bench_function("nb101/neighbours", |b| {
        b.iter(|| Nb101Space.neighbours(black_box(&graphs[0])))
    });
    c.bench_function("nb101/sample", |b| b.iter(|| Nb101Space.sample(&mut rng)));
}

fn chain(c: &mut Criterion) {
    let s = ChainSpace::cnn();
    let a = s
        .parse("conv3x3(32) -> conv3x3(32) -> sep_conv_5x5(64) -> conv5x5(16)")
        .unwrap();
    c.bench_function("chain/neighbours", |b| {
        b.iter(|| s.neighbours(black_box(&a)))
    });
}

criterion_group!(benches, nb201, darts, nb101, chain);
criterion_main!(benches);
