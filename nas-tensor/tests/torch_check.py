"""Compares tests/it/torch_export.rs output with PyTorch: python torch_check.py [DIR]."""
import sys
import torch, torch.nn as nn
from safetensors.torch import load_file
d = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tcheck"
init = load_file(f"{d}/init.safetensors"); out = load_file(f"{d}/out.safetensors")
class GAP(nn.Module):
    def forward(self, x): return x.mean((2,3))
m = nn.Sequential(nn.Sequential(nn.Conv2d(3,8,3,padding=1,bias=False), nn.BatchNorm2d(8)), nn.ReLU(), nn.MaxPool2d(3,1,1),
    nn.Conv2d(8,8,3,padding=2,dilation=2,groups=4), nn.BatchNorm2d(8, affine=False), nn.AvgPool2d(3,2,1,count_include_pad=False), GAP(), nn.Linear(8,4))
missing, unexpected = m.load_state_dict(init, strict=False)
print("missing", missing, "unexpected", unexpected)
x = out["x"]; y = m(x); loss = nn.functional.cross_entropy(y, torch.tensor([1,3,0])); loss.backward()
def cmp(name, a, b): print(f"{name:28s} max abs diff {(a-b).abs().max().item():.2e}  (scale {b.abs().max().item():.2e})")
cmp("y", out["y"], y.detach()); cmp("loss", out["loss"], loss.detach())
for n, p in m.named_parameters(): cmp("grad."+n, out["grad."+n], p.grad)
for n, b in m.named_buffers():
    if "num_batches" in n: continue
    cmp("after."+n, out["after."+n], b)
params = list(m.parameters())
opt = torch.optim.Adam(params, lr=0.01, weight_decay=0.1); opt.step(); opt.step()
sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01); sgd.step(); sgd.step()
for n, p in m.named_parameters(): cmp("stepped."+n, out["stepped."+n], p.detach())
m.eval(); cmp("y_eval", out["y_eval"], m(x).detach())
