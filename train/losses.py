"""Segmentation losses over the frames that have ground truth (paper section 3.4, appendix F).

Binary (K = 1), logits x [N, 1, H, W] and masks y [N, H, W] in {0, 1}:
    ce     mean BCE-with-logits over pixels
    dice   1 - (2 sum(p y) + 1) / (sum p + sum y + 1)          per frame, p = sigmoid(x)
    iou    1 - (sum(p y) + 1) / (sum(p + y - p y) + 1)          per frame (soft Jaccard)
    focal  alpha_t (1 - p_t)^gamma BCE, alpha_t = alpha on foreground and 1 - alpha on background
Multi-class (K > 1), logits [N, K, H, W] and class ids [N, H, W]: CE over classes, and Dice /
IoU / focal on the softmax against one-hot targets, averaged over the classes of each frame.
Only frames with mask_valid count; a batch with none gives zero losses that still backpropagate.
`SegmentationLoss(weights)(logits, target, mask_valid, con_loss)` returns the weighted total
and each term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import LossWeights

SMOOTH = 1.0


def _probs_and_onehot(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """logits [N, K, H, W], target [N, H, W] -> probabilities and targets, both [N, K', H, W]."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits), target.unsqueeze(1).to(logits.dtype)
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return torch.softmax(logits, dim=1), onehot


def cross_entropy_loss(logits: Tensor, target: Tensor) -> Tensor:
    """BCE-with-logits (K = 1) or CE over classes (K > 1), mean over pixels."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
    return F.cross_entropy(logits, target.long())


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    probs, truth = _probs_and_onehot(logits, target)  # [N, K', H, W]
    inter = (probs * truth).sum(dim=(2, 3))
    total = probs.sum(dim=(2, 3)) + truth.sum(dim=(2, 3))
    return (1 - (2 * inter + SMOOTH) / (total + SMOOTH)).mean()


def iou_loss(logits: Tensor, target: Tensor) -> Tensor:
    probs, truth = _probs_and_onehot(logits, target)
    inter = (probs * truth).sum(dim=(2, 3))
    union = (probs + truth - probs * truth).sum(dim=(2, 3))
    return (1 - (inter + SMOOTH) / (union + SMOOTH)).mean()


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Balanced focal loss: alpha_t (1 - p_t)^gamma * CE, mean over pixels (and classes)."""
    if logits.shape[1] == 1:
        x = logits[:, 0]
        y = target.to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p = torch.sigmoid(x)
        p_t = p * y + (1 - p) * (1 - y)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        return (alpha_t * (1 - p_t) ** gamma * ce).mean()
    log_p = F.log_softmax(logits, dim=1)  # [N, K, H, W]
    log_p_t = log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)  # [N, H, W]
    p_t = log_p_t.exp()
    alpha_t = torch.where(target > 0, alpha, 1 - alpha).to(logits.dtype)
    return (-alpha_t * (1 - p_t) ** gamma * log_p_t).mean()


class SegmentationLoss(nn.Module):
    """Weighted sum of CE, Dice, IoU, focal and (when given) the COM contrastive loss."""

    def __init__(self, weights: LossWeights) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, logits: Tensor, target: Tensor, mask_valid: Tensor | None = None, con_loss: Tensor | None = None) -> dict[str, Tensor]:
        """logits [N, K, H, W], target [N, H, W], mask_valid bool [N] -> {"total", "ce", "dice", "iou", "focal", "con"}."""
        w = self.weights
        logits = logits.float()
        if mask_valid is not None:
            keep = mask_valid.bool()
            if not bool(keep.any()):
                zero = logits.sum() * 0.0  # keeps the graph: every parameter gets a (zero) gradient
                terms = {name: zero for name in ("ce", "dice", "iou", "focal")}
                terms["con"] = con_loss.float() if con_loss is not None else zero
                terms["total"] = zero + w.con * terms["con"]
                return terms
            logits, target = logits[keep], target[keep]
        terms = {
            "ce": cross_entropy_loss(logits, target),
            "dice": dice_loss(logits, target),
            "iou": iou_loss(logits, target),
            "focal": focal_loss(logits, target, w.focal_alpha, w.focal_gamma) if w.focal > 0 else logits.sum() * 0.0,
        }
        terms["con"] = con_loss.float() if con_loss is not None else logits.sum() * 0.0
        terms["total"] = (
            w.ce * terms["ce"] + w.dice * terms["dice"] + w.iou * terms["iou"]
            + w.focal * terms["focal"] + w.con * terms["con"]
        )
        return terms
