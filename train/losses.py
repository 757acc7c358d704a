"""Segmentation losses over the frames that have ground truth (paper section 3.4, appendix F).

Binary (K = 1), logits x [N, 1, H, W] and masks y [N, H, W] in {0, 1}:
    ce     mean BCE-with-logits over pixels
    dice   1 - (2 sum(p y) + 1) / (sum p + sum y + 1)          per frame, p = sigmoid(x)
    iou    1 - (sum(p y) + 1) / (sum(p + y - p y) + 1)          per frame (soft Jaccard)
    focal  alpha_t (1 - p_t)^gamma BCE, alpha_t = alpha on foreground and 1 - alpha on background
Multi-class (K > 1), logits [N, K, H, W] and class ids [N, H, W]: CE over classes, and Dice /
IoU / focal on the softmax against one-hot targets, averaged over the classes of each frame.

Ignored pixels: a target value of IGNORE_INDEX (255, VPO's ignore label) contributes nothing to
any term, binary or multi-class. CE and focal are means over the remaining pixels (CAVP
`loss/losser.py`: nn.CrossEntropyLoss(ignore_index=255), i.e. a sum over non-ignored pixels
divided by their count); Dice and IoU sum p, y and p*y over the remaining pixels only. A frame
whose pixels are all ignored counts like a frame without ground truth. Binary training takes its
ignore marks from the class map (`segmentation_target`), since the binary mask has none.

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
IGNORE_INDEX = 255  # CAVP's ignore_index; the VPO loader keeps the masks' 255 as this value


def segmentation_target(masks: Tensor, semantic: Tensor | None, num_classes: int) -> Tensor:
    """The loss target of a batch: class ids (K > 1), or the binary masks (K = 1) with
    IGNORE_INDEX wherever the class map marks a pixel ignored. masks/semantic [..., H, W]."""
    if num_classes > 1:
        if semantic is None:
            raise ValueError("a multi-class model needs class maps (batch['semantic']); this layout has binary masks only")
        return semantic
    if semantic is None:
        return masks
    return torch.where(semantic == IGNORE_INDEX, torch.full_like(masks, IGNORE_INDEX), masks)


def _valid(target: Tensor, ignore_index: int | None) -> Tensor:
    """bool [N, H, W]: the pixels that count."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def _pixel_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of `values` [N, H, W] over the valid pixels; zero (with gradient) when none is valid."""
    return (values * valid).sum() / valid.sum().clamp(min=1)


def _probs_and_onehot(logits: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """logits [N, K, H, W], target [N, H, W] -> probabilities and targets [N, K', H, W], both
    zero at ignored pixels so that every sum over pixels leaves them out."""
    keep = valid.unsqueeze(1).to(logits.dtype)
    target = torch.where(valid, target, torch.zeros_like(target))
    if logits.shape[1] == 1:
        return torch.sigmoid(logits) * keep, target.unsqueeze(1).to(logits.dtype) * keep
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return torch.softmax(logits, dim=1) * keep, onehot * keep


def cross_entropy_loss(logits: Tensor, target: Tensor, ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    """BCE-with-logits (K = 1) or CE over classes (K > 1), mean over the non-ignored pixels."""
    valid = _valid(target, ignore_index)
    safe = torch.where(valid, target, torch.zeros_like(target))
    if logits.shape[1] == 1:
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], safe.to(logits.dtype), reduction="none")
    else:
        ce = F.cross_entropy(logits, safe.long(), reduction="none")
    return _pixel_mean(ce, valid)


def dice_loss(logits: Tensor, target: Tensor, ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    probs, truth = _probs_and_onehot(logits, target, _valid(target, ignore_index))  # [N, K', H, W]
    inter = (probs * truth).sum(dim=(2, 3))
    total = probs.sum(dim=(2, 3)) + truth.sum(dim=(2, 3))
    return (1 - (2 * inter + SMOOTH) / (total + SMOOTH)).mean()


def iou_loss(logits: Tensor, target: Tensor, ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    probs, truth = _probs_and_onehot(logits, target, _valid(target, ignore_index))
    inter = (probs * truth).sum(dim=(2, 3))
    union = (probs + truth - probs * truth).sum(dim=(2, 3))
    return (1 - (inter + SMOOTH) / (union + SMOOTH)).mean()


def focal_loss(
    logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0, ignore_index: int | None = IGNORE_INDEX,
) -> Tensor:
    """Balanced focal loss: alpha_t (1 - p_t)^gamma * CE, mean over the non-ignored pixels."""
    valid = _valid(target, ignore_index)
    safe = torch.where(valid, target, torch.zeros_like(target))
    if logits.shape[1] == 1:
        x = logits[:, 0]
        y = safe.to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p = torch.sigmoid(x)
        p_t = p * y + (1 - p) * (1 - y)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        return _pixel_mean(alpha_t * (1 - p_t) ** gamma * ce, valid)
    log_p = F.log_softmax(logits, dim=1)  # [N, K, H, W]
    log_p_t = log_p.gather(1, safe.long().unsqueeze(1)).squeeze(1)  # [N, H, W]
    p_t = log_p_t.exp()
    alpha_t = torch.where(safe > 0, alpha, 1 - alpha).to(logits.dtype)
    return _pixel_mean(-alpha_t * (1 - p_t) ** gamma * log_p_t, valid)


class SegmentationLoss(nn.Module):
    """Weighted sum of CE, Dice, IoU, focal and (when given) the COM contrastive loss."""

    def __init__(self, weights: LossWeights, ignore_index: int | None = IGNORE_INDEX) -> None:
        super().__init__()
        self.weights = weights
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor, mask_valid: Tensor | None = None, con_loss: Tensor | None = None) -> dict[str, Tensor]:
        """logits [N, K, H, W], target [N, H, W], mask_valid bool [N] -> {"total", "ce", "dice", "iou", "focal", "con"}."""
        w = self.weights
        ignore = self.ignore_index
        logits = logits.float()
        keep = mask_valid.bool() if mask_valid is not None else torch.ones(target.shape[0], dtype=torch.bool, device=target.device)
        keep = keep & _valid(target, ignore).flatten(1).any(dim=1)  # a frame that is all ignored has no ground truth
        if not bool(keep.any()):
            zero = logits.sum() * 0.0  # keeps the graph: every parameter gets a (zero) gradient
            terms = {name: zero for name in ("ce", "dice", "iou", "focal")}
            terms["con"] = con_loss.float() if con_loss is not None else zero
            terms["total"] = zero + w.con * terms["con"]
            return terms
        if not bool(keep.all()):
            logits, target = logits[keep], target[keep]
        terms = {
            "ce": cross_entropy_loss(logits, target, ignore),
            "dice": dice_loss(logits, target, ignore),
            "iou": iou_loss(logits, target, ignore),
            "focal": focal_loss(logits, target, w.focal_alpha, w.focal_gamma, ignore) if w.focal > 0 else logits.sum() * 0.0,
        }
        terms["con"] = con_loss.float() if con_loss is not None else logits.sum() * 0.0
        terms["total"] = (
            w.ce * terms["ce"] + w.dice * terms["dice"] + w.iou * terms["iou"]
            + w.focal * terms["focal"] + w.con * terms["con"]
        )
        return terms
