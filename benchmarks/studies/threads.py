"""1 vs 2 torch threads on the same autoencoder step, alternated in one process (results/threads.md beside this file)."""

import os
import time

import torch

from dec_lightning.encoders import MLPDecoder, MLPEncoder

encoder, decoder = MLPEncoder([784, 500, 500, 2000, 10]), MLPDecoder([784, 500, 500, 2000, 10])
optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], 1e-3)
x = torch.rand(256, 784)


def step() -> None:
    loss = (decoder(encoder(x)) - x).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


for threads in (1, 2, 1, 2):
    torch.set_num_threads(threads)
    for _ in range(3):  # warm-up
        step()
    start = time.perf_counter()
    for _ in range(30):
        step()
    ms = (time.perf_counter() - start) / 30 * 1000
    print(f"{threads} threads: {ms:.1f} ms/step, load average {os.getloadavg()[0]:.2f}")
