"""A minimal stand-in for torchvision (not in the peer's venv): the MNIST dataset read from the
local IDX gz files ($MNIST_DIR) and the three transforms van de Ven & Tolias's reference code
uses (Pad, ToTensor, Lambda, composed). Only what bench/continual/reference/vdv_reference.sh
needs; the transforms act on uint8 arrays where torchvision's act on PIL images, with the
same values."""
from . import datasets, transforms, utils  # noqa: F401
