import numpy as np
import torch

class Compose:
    def __init__(self, ts): self.ts = ts
    def __call__(self, x):
        for t in self.ts: x = t(x)
        return x

class Lambda:
    def __init__(self, f): self.f = f
    def __call__(self, x): return self.f(x)

class Pad:
    """torchvision's Pad(n) on a PIL image: zeros on every side (a uint8 H×W array here)."""
    def __init__(self, n): self.n = n
    def __call__(self, x): return np.pad(x, self.n)

class ToTensor:
    """uint8 H×W → float 1×H×W in [0, 1], as torchvision's ToTensor on a mode-L image."""
    def __call__(self, x): return torch.from_numpy(np.ascontiguousarray(x)).float().div(255).unsqueeze(0)
