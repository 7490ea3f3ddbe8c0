"""The photometric half of a training sample, run on the batch on the training device.

Workers send uint8 crops plus each sample's brightness factors and grayscale roll (`sampling.py`);
here they become the model's float input: grayscale (ITU-R 601 weights, as cv2's RGB2GRAY in the
official pipeline) where the sample rolled it, times the crop's brightness factor, clipped to
[0, 255], ImageNet mean/std (`processing.normalize`). A handful of fused elementwise ops on the
device, the same on every worker count and rank.
"""

from __future__ import annotations

import torch

from seqtrack_mlflow.inputs.processing import IMAGENET_MEAN, IMAGENET_STD

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def photometric(crops: torch.Tensor, brightness: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """(B, n, H, W, 3) uint8 crops -> (B, n, 3, H, W) float32 model input.

    `brightness` (B, n) is each crop's factor (>= 0), `gray` (B,) bool each sample's grayscale roll;
    pass `gray` on the CPU (a CUDA one costs a sync to learn whether any sample is gray).
    """
    device = crops.device
    x = crops.permute(0, 1, 4, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    if bool(gray.any()):  # 5% of samples: most batches of 8-32 have one
        rows = gray.to(device=device, dtype=torch.bool).nonzero().flatten()
        weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float32, device=device)
        luma = torch.einsum("bnchw,c->bnhw", x[rows], weights)
        x[rows] = luma.unsqueeze(2).expand(-1, -1, 3, -1, -1)
    factor = brightness.to(device=device, dtype=torch.float32)[:, :, None, None, None]
    x.mul_(factor).clamp_(0.0, 255.0)
    scale = torch.as_tensor(1.0 / (255.0 * IMAGENET_STD), dtype=torch.float32, device=device)
    shift = torch.as_tensor(IMAGENET_MEAN / IMAGENET_STD, dtype=torch.float32, device=device)
    return x.mul_(scale[:, None, None]).sub_(shift[:, None, None])


def model_inputs(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch -> (templates (B, T, 3, H, W), search (B, 3, H, W)) float32 on `device`."""
    templates = batch["templates"].to(device, non_blocking=True)
    search = batch["search"].to(device, non_blocking=True)
    brightness = batch["brightness"].to(device, non_blocking=True)
    gray = batch["gray"]  # stays on the CPU: photometric moves the few rows it needs
    return (
        photometric(templates, brightness[:, :-1], gray),
        photometric(search[:, None], brightness[:, -1:], gray)[:, 0],
    )


__all__ = ["GRAY_WEIGHTS", "model_inputs", "photometric"]
