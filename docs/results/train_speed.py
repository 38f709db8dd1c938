"""Seconds per training batch (32 images, forward + backward + Adam step, 1 thread) of the synthcxr models: can
DenseNet-121 train in about 30 minutes on 2 cores (issue 16)? Output: docs/results/train_speed.txt.
Run: .venv/bin/python docs/results/train_speed.py"""

import time

import torch
from torch import nn

from cemap.models.synthcxr_nets import SlimResNet18, densenet121_1ch, resnet18_1ch
from cemap.models.cxr_cnn import CxrCNN

torch.set_num_threads(1)
for size in (64, 128):
    for name, make in (
        ("cxr-cnn", lambda: CxrCNN(4)),
        ("resnet18-slim", lambda: SlimResNet18(4)),
        ("resnet18", lambda: resnet18_1ch(4)),
        ("densenet121", lambda: densenet121_1ch(4)),
    ):
        net = make().train()
        opt = torch.optim.Adam(net.parameters())
        x = torch.rand(32, 1, size, size)
        y = (torch.rand(32, 4) > 0.5).float()

        def step():
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
            opt.step()

        step()
        t = time.perf_counter()
        step()
        step()
        s = (time.perf_counter() - t) / 2
        print(
            f"{name:14s} {size:4d} px  {s:6.2f} s/batch  -> one epoch of 2000 images {s * 63 / 60:6.1f} min", flush=True
        )
