"""K-means with k-means++ seeding, in torch, seeded by a torch.Generator."""

from __future__ import annotations

import torch
from torch import Tensor


def kmeans_pp_init(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """x [N, d] -> k initial centroids [k, d], each drawn with probability ~ squared distance."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[first]]
    dist2 = (x - x[first]).pow(2).sum(dim=1)  # [N]
    for _ in range(1, k):
        total = float(dist2.sum())
        if total <= 0:  # every point sits on a centroid: take any point not yet chosen
            index = int(torch.randint(n, (1,), generator=generator))
        else:
            index = int(torch.multinomial(dist2 / total, 1, generator=generator))
        centroids.append(x[index])
        dist2 = torch.minimum(dist2, (x - x[index]).pow(2).sum(dim=1))
    return torch.stack(centroids)


def kmeans(x: Tensor, k: int, generator: torch.Generator, iterations: int = 50) -> tuple[Tensor, Tensor]:
    """Lloyd iterations from a k-means++ start: x [N, d] -> (centroids [k, d], assignment [N])."""
    if k > x.shape[0]:
        raise ValueError(f"k = {k} exceeds the {x.shape[0]} points")
    x = x.double()
    centroids = kmeans_pp_init(x, k, generator)
    assign = torch.cdist(x, centroids).argmin(dim=1)
    for _ in range(iterations):
        for c in range(k):
            members = x[assign == c]
            if members.shape[0]:
                centroids[c] = members.mean(dim=0)
        new = torch.cdist(x, centroids).argmin(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
    return centroids.float(), assign
