"""PyTorch reference for nas-search/examples/lstm_lm_step.rs: one training step of a character
LSTM language model (embedding, nn.LSTM, decoder tied to the embedding, cross-entropy,
backward, clip_grad_norm_ 0.25, Adam), timed per step.

    python lstm_lm_step_ref.py [STEPS] [BATCH] [SEQ] [HIDDEN] [VOCAB] [--threads N]
"""
import sys
import time

import torch

argv = sys.argv[1:]
threads = None
if "--threads" in argv:
    k = argv.index("--threads")
    threads = int(argv[k + 1])
    argv = argv[:k] + argv[k + 2:]
vals = [int(a) for a in argv]
steps, batch, seq, hidden, vocab = (vals + [6, 64, 64, 256, 65][len(vals):])[:5]
if threads is not None:
    torch.set_num_threads(threads)
torch.manual_seed(0)


class Lm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, hidden)
        self.lstm = torch.nn.LSTM(hidden, hidden)
        self.bias = torch.nn.Parameter(torch.zeros(vocab))

    def forward(self, x, state):
        y, state = self.lstm(self.emb(x), state)
        return torch.nn.functional.linear(y.reshape(-1, hidden), self.emb.weight, self.bias), state


model = Lm()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
ids = torch.randint(0, vocab, ((seq + 1) * batch,))
x = ids[: seq * batch].reshape(seq, batch)
y = ids[batch:].reshape(seq * batch)
state = (torch.zeros(1, batch, hidden), torch.zeros(1, batch, hidden))
print(f"PyTorch {torch.__version__} LSTM LM step: batch {batch}, sequence {seq}, hidden {hidden}, "
      f"vocab {vocab}, threads {torch.get_num_threads()}")
times = []
for i in range(steps):
    t = time.perf_counter()
    opt.zero_grad()
    logits, _ = model(x, state)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    opt.step()
    dt = time.perf_counter() - t
    print(f"step {i}: {dt * 1e3:.1f} ms, loss {loss.item():.4f}")
    times.append(dt)
rest = sorted(times[1:])
if rest:
    print(f"median of steps 1..{steps - 1}: {rest[len(rest) // 2] * 1e3:.1f} ms")
