import gzip, os
import numpy as np
import torch

MNIST_DIR = os.environ["MNIST_DIR"]

def _idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)

class MNIST(torch.utils.data.Dataset):
    def __init__(self, root, train=True, download=False, transform=None, target_transform=None):
        pre = "train" if train else "t10k"
        self.data = _idx(os.path.join(MNIST_DIR, f"{pre}-images-idx3-ubyte.gz"))
        labels = torch.from_numpy(_idx(os.path.join(MNIST_DIR, f"{pre}-labels-idx1-ubyte.gz")).astype(np.int64))
        if train:
            self.train_labels = labels
        else:
            self.test_labels = labels
        self.targets = labels
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        img, target = self.data[i], int(self.targets[i])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target
