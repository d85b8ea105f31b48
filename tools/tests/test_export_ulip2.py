"""ULIP-2's checkpoint keys onto ``point_tower.PointTower`` (``export_ulip2.map_state_dict``).

    python -m unittest discover -s tools/tests
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import export_ulip2 as ulip2  # noqa: E402
import point_tower  # noqa: E402


class MapStateDict(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tower = point_tower.PointTower(point_tower.ULIP2_SIZES).eval()
        cls.checkpoint = ulip2.random_point_checkpoint(point_tower.ULIP2_SIZES, seed=3)

    def test_every_key_is_used_and_no_tower_parameter_is_left_unset(self) -> None:
        mapped, scale = ulip2.map_state_dict(self.checkpoint, self.tower)
        wanted = self.tower.state_dict()
        self.assertEqual(set(mapped), set(wanted))
        # Every checkpoint key but the logit scale became exactly one tower entry.
        self.assertEqual(len(mapped), len(self.checkpoint) - 1)
        self.assertIsNotNone(scale)
        tower = point_tower.PointTower(point_tower.ULIP2_SIZES).eval()
        tower.load_state_dict(mapped, strict=True)
        for name, value in tower.state_dict().items():
            self.assertTrue(torch.equal(value, mapped[name]), name)

    def test_the_shapes_are_ulip2s(self) -> None:
        shapes = ulip2.ulip2_shapes()
        self.assertEqual(shapes["pc_projection"], (768, 1280))
        self.assertEqual(shapes["point_encoder.encoder.first_conv.0.weight"], (128, 6, 1))
        self.assertEqual(shapes["point_encoder.encoder.second_conv.3.weight"], (256, 512, 1))
        self.assertEqual(shapes["point_encoder.pos_embed.0.weight"], (128, 3))
        blocks = {k.split(".")[3] for k in shapes if k.startswith("point_encoder.blocks.blocks.")}
        self.assertEqual(len(blocks), 18)
        self.assertEqual(shapes["point_encoder.blocks.blocks.17.attn.qkv.weight"], (1152, 384))
        self.assertNotIn("point_encoder.blocks.blocks.0.attn.qkv.bias", shapes)

    def test_projection_is_transposed_into_the_linear(self) -> None:
        mapped, _ = ulip2.map_state_dict(self.checkpoint, self.tower)
        projection = self.checkpoint["module.pc_projection"]
        self.assertTrue(torch.equal(mapped["projection.weight"], projection.t()))
        features = torch.randn(2, 768)
        tower = point_tower.PointTower(point_tower.ULIP2_SIZES).eval()
        tower.load_state_dict(mapped)
        self.assertTrue(torch.allclose(tower.projection(features), features @ projection, atol=1e-5))

    def test_openclip_keys_are_left_to_the_openclip_towers(self) -> None:
        with_clip = dict(self.checkpoint)
        with_clip["module.open_clip_model.visual.proj"] = torch.zeros(4, 4)
        mapped, _ = ulip2.map_state_dict(with_clip, self.tower)
        self.assertFalse(any("open_clip" in k for k in mapped))

    def test_an_unknown_key_is_refused_by_name(self) -> None:
        extra = dict(self.checkpoint)
        extra["module.point_encoder.cls_head_finetune.0.weight"] = torch.zeros(256, 768)
        with self.assertRaisesRegex(ValueError, "cls_head_finetune"):
            ulip2.map_state_dict(extra, self.tower)

    def test_a_missing_key_is_refused_naming_the_tower_parameter(self) -> None:
        missing = dict(self.checkpoint)
        del missing["module.point_encoder.blocks.blocks.5.mlp.fc2.weight"]
        with self.assertRaisesRegex(ValueError, r"blocks\.5\.mlp\.2\.weight"):
            ulip2.map_state_dict(missing, self.tower)

    def test_a_wrong_shape_is_refused(self) -> None:
        wrong = dict(self.checkpoint)
        wrong["module.point_encoder.reduce_dim.weight"] = torch.zeros(384, 128)
        with self.assertRaisesRegex(ValueError, "reduce_dim.weight"):
            ulip2.map_state_dict(wrong, self.tower)


if __name__ == "__main__":
    unittest.main()
