//! Inference of the networks a search hands to deployment (what `examples/infer.rs` times):
//! in evaluation mode under `no_grad` no graph node is recorded, each image's logits do not
//! depend on the rest of the batch (batch norm on running statistics), and the logits are those
//! of the same forward with recording on.

use nas_search::nets::darts::{DartsConfig, DartsNetwork};
use nas_search::nets::nb201::{Nb201Config, Nb201Network};
use nas_space::darts::DARTS_V2;
use nas_space::nb201::Nb201Cell;
use nas_tensor::nn::Module;
use nas_tensor::{Tensor, graph_nodes_recorded, no_grad};

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs())),
            "{what}: value {i}: {x} vs {y}"
        );
    }
}

fn check_inference(name: &str, net: &dyn Module, classes: usize) {
    // Train once so that the running statistics move away from (0, 1): a batch norm that
    // normalised with the batch's statistics in evaluation would then differ from one using
    // the running ones even on a batch of one.
    let x_train = Tensor::randn(&[8, 3, 32, 32], 7).scale(2.0);
    net.set_training(true);
    net.forward(&x_train).unwrap();
    net.set_training(false);

    let n = 3;
    let x = Tensor::randn(&[n, 3, 32, 32], 11);
    let recorded = graph_nodes_recorded();
    let batch = no_grad(|| net.forward(&x)).unwrap();
    assert_eq!(
        graph_nodes_recorded(),
        recorded,
        "{name}: inference recorded graph nodes"
    );
    assert_eq!(batch.shape(), &[n, classes]);
    let batch = batch.to_vec().unwrap();
    let xs = x.to_vec().unwrap();
    let per = 3 * 32 * 32;
    for i in 0..n {
        let xi = Tensor::from_slice(&xs[i * per..(i + 1) * per], &[1, 3, 32, 32]).unwrap();
        let yi = no_grad(|| net.forward(&xi)).unwrap().to_vec().unwrap();
        assert_close(
            &yi,
            &batch[i * classes..(i + 1) * classes],
            &format!("{name}: image {i} alone vs in the batch"),
        );
    }
    // the same forward with recording on (evaluation mode still) gives the same logits
    let with_graph = net.forward(&x).unwrap();
    assert!(graph_nodes_recorded() > recorded, "{name}");
    assert_close(
        &with_graph.to_vec().unwrap(),
        &batch,
        &format!("{name}: no_grad vs recorded"),
    );
}

#[test]
fn deployed_networks_infer_without_a_graph_and_per_image() {
    let cell: Nb201Cell =
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
            .parse()
            .unwrap();
    let nb201 = Nb201Network::new(
        &cell,
        Nb201Config {
            channels: 4,
            cells_per_stage: 1,
            in_channels: 3,
            classes: 10,
        },
        0,
    )
    .unwrap();
    check_inference("nb201", &nb201, 10);
    let darts = DartsNetwork::new(
        &DARTS_V2,
        DartsConfig {
            channels: 4,
            layers: 3,
            in_channels: 3,
            classes: 7,
            auxiliary: false,
        },
        0,
    )
    .unwrap();
    check_inference("darts_v2", &darts, 7);
}
