"""bind-mini's towers: a small ImageBind (vision, text, audio) and a PointBERT-style point tower.

Everything is the reference ImageBind code, configured small so that training fits a 2-core CPU:
narrow and shallow towers, 112 px images (the manifest's ``resize``/``crop``; ImageBind's vision
preprocessor is rebuilt for that size from its own classes, with a small convolutional stem that
yields 7 x 7 tokens), and
non-overlapping 32 x 16 fbank patches (ImageBind's audio input geometry, 3 clips of 128 x 204, is
kept). Point clouds use 1024 points in 32 groups of 16.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

TOOLS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOOLS))

from bindery_tools import reference as ref  # noqa: E402
import point_tower  # noqa: E402

EMBED_DIM = 128
VISION = dict(width=96, blocks=3, heads=4)
TEXT = dict(width=64, blocks=2, heads=4)
AUDIO = dict(width=96, blocks=3, heads=4)
#: Point tower sizes (PointBERT layout, see tools/point_tower.py).
POINT_SIZES = point_tower.Sizes(embed_dim=EMBED_DIM, encoder_dim=96, trans_dim=96, depth=3, heads=4)
#: Point preprocessing of the bind-mini manifest: fewer points and groups than ULIP's 8192/512
#: (the objects are simple surfaces), same steps.
POINT_PREPROCESS = {
    "npoints": 1024,
    "num_group": 32,
    "group_size": 16,
    "use_color": True,
    "default_color": 0.4,
    "min_points": 1,
    "center_input": "center",
    "mesh_samples": 10000,
}
IMAGE_SIZE = 112
AUDIO_KERNEL = (32, 16)
AUDIO_STRIDE = (32, 16)


def build_imagebind(seed: int) -> torch.nn.Module:
    """The vision/text/audio ImageBind of bind-mini with seeded initial weights (train mode)."""
    torch.manual_seed(seed)
    tiny = dict(embed_dim=16, blocks=1, heads=2)
    model = ref.imagebind_model.ImageBindModel(
        video_frames=2,
        out_embed_dim=EMBED_DIM,
        vision_embed_dim=VISION["width"],
        vision_num_blocks=VISION["blocks"],
        vision_num_heads=VISION["heads"],
        text_embed_dim=TEXT["width"],
        text_num_blocks=TEXT["blocks"],
        text_num_heads=TEXT["heads"],
        audio_embed_dim=AUDIO["width"],
        audio_kernel_size=AUDIO_KERNEL,
        audio_stride=AUDIO_STRIDE,
        audio_num_blocks=AUDIO["blocks"],
        audio_num_heads=AUDIO["heads"],
        audio_num_mel_bins=128,
        audio_target_len=204,
        audio_drop_path=0.1,  # ImageBind's own value: regularises the speech tower
        # Towers bindery does not serve: as small as the constructor allows.
        depth_embed_dim=tiny["embed_dim"],
        depth_num_blocks=tiny["blocks"],
        depth_num_heads=tiny["heads"],
        thermal_embed_dim=tiny["embed_dim"],
        thermal_num_blocks=tiny["blocks"],
        thermal_num_heads=tiny["heads"],
        imu_embed_dim=tiny["embed_dim"],
        imu_num_blocks=tiny["blocks"],
        imu_num_heads=tiny["heads"],
    )
    model.modality_preprocessors[ref.ModalityType.VISION] = _vision_preprocessor()
    return model


def _vision_preprocessor() -> torch.nn.Module:
    """ImageBind's vision preprocessor (as ``_create_modality_preprocessors`` builds it) for
    ``IMAGE_SIZE`` px images instead of 224."""
    from functools import partial

    from imagebind.models.multimodal_preprocessors import (
        PatchEmbedGeneric,
        RGBDTPreprocessor,
        SpatioTemporalPosEmbeddingHelper,
    )

    w = VISION["width"]
    # A convolutional patch stem (three 3x3 stride-2 convolutions, then 2x2 patches: 7 x 7 tokens
    # of 16 px) instead of ImageBind's single linear patch projection: early convolutions make a
    # small ViT trained from scratch pick up shape quickly, where a linear stem only found colour
    # within the CPU budget. Images stay single frames (like ImageBind's depth and thermal
    # stems), so the stem is 2-D.
    stem = PatchEmbedGeneric(
        proj_stem=[
            torch.nn.Conv2d(3, w // 4, kernel_size=3, stride=2, padding=1),
            torch.nn.GELU(),
            torch.nn.Conv2d(w // 4, w // 2, kernel_size=3, stride=2, padding=1),
            torch.nn.GELU(),
            torch.nn.Conv2d(w // 2, w, kernel_size=3, stride=2, padding=1),
            torch.nn.GELU(),
            torch.nn.Conv2d(w, w, kernel_size=2, stride=2, bias=False),
        ]
    )
    return RGBDTPreprocessor(
        img_size=[3, IMAGE_SIZE, IMAGE_SIZE],
        num_cls_tokens=1,
        pos_embed_fn=partial(SpatioTemporalPosEmbeddingHelper, learnable=True),
        rgbt_stem=stem,
        depth_stem=None,
    )


def build_point(seed: int) -> point_tower.PointTower:
    """The point tower with seeded initial weights (train mode)."""
    torch.manual_seed(seed + 1)
    return point_tower.PointTower(POINT_SIZES)
