//! A real learning test: a small CNN on UCI digits reaches at least 95% held-out accuracy.

use crate::common::digits;

use nas_tensor::live_graph_nodes;

#[test]
fn small_cnn_learns_uci_digits() {
    let (train, test) = digits::load(7);
    assert_eq!(train.len() + test.len(), 1797);
    assert_eq!(test.len(), 359);
    let mut net = digits::model(1).unwrap();
    let before = digits::accuracy(&mut net, &test).unwrap();
    let mut losses = Vec::new();
    let acc = digits::train(&mut net, &train, &test, 8, 3, |e, loss, acc| {
        eprintln!("epoch {e}: loss {loss:.4} test accuracy {acc:.4}");
        losses.push(loss);
    })
    .unwrap();
    assert!(
        before < 0.3,
        "untrained accuracy should be near chance, got {before}"
    );
    assert!(
        losses.last().unwrap() < &(losses[0] * 0.5),
        "loss fell: {losses:?}"
    );
    assert!(acc >= 0.95, "test accuracy {acc} < 0.95");
    assert_eq!(live_graph_nodes(), 0, "no graph left alive after training");
}
