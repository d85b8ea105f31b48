"""``export_languagebind.py --checkpoint-dir`` on checkpoints saved the way Hugging Face holds them.

    tools/.venv-languagebind/bin/python -m unittest discover -s tools/tests

Skipped outside ``tools/.venv-languagebind`` (LanguageBind's reference needs transformers 4.30.2).
"""

from __future__ import annotations

import json
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import transformers

    from bindery_tools.languagebind import TRANSFORMERS_VERSION

    AVAILABLE = transformers.__version__ == TRANSFORMERS_VERSION
except ImportError:
    AVAILABLE = False


@unittest.skipUnless(AVAILABLE, "needs tools/.venv-languagebind (transformers 4.30.2)")
class CheckpointDir(unittest.TestCase):
    def test_saved_fixture_models_export_as_the_fixture(self) -> None:
        """Saved with LoRA adapters (peft-wrapped encoder keys) and loaded back by folder name,
        every tower gives the committed fixture's outputs, and the manifest's preprocessing is
        the fixture's."""
        import onnxruntime as ort
        import torch

        import export_languagebind as el

        committed = Path(__file__).resolve().parents[2] / "models" / "languagebind-fixture"
        with tempfile.TemporaryDirectory() as tmp:
            root, out = Path(tmp) / "checkpoints", Path(tmp) / "out"
            for modality, config in el.fixture_configs().items():
                folder = root / el.CHECKPOINTS[modality]
                el.build_model(modality, config).save_pretrained(str(folder))
                # The released configs hold the square side; resize_pos rewrites it in memory.
                saved = json.loads((folder / "config.json").read_text())
                saved["vision_config"]["image_size"] = 224
                (folder / "config.json").write_text(json.dumps(saved))
            el.export(lambda m: el.load_checkpoint(root, m), out, "x", "x", "x")
            gen = torch.Generator().manual_seed(11)
            configs = el.fixture_configs()
            for tower, name in el.ONNX.items():
                config = configs["image" if tower == "text" else tower]
                x = el.example_input(tower, config, 2, gen).numpy()
                feed = {el.INPUTS[tower]: x}
                (got,) = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"]).run(None, feed)
                (want,) = ort.InferenceSession(str(committed / name), providers=["CPUExecutionProvider"]).run(
                    None, feed
                )
                np.testing.assert_allclose(got, want, atol=1e-6, err_msg=tower)
            ours = (out / "model.toml").read_text().split("\n[text]", 1)[1]
            self.assertEqual(ours, (committed / "model.toml").read_text().split("\n[text]", 1)[1])


if __name__ == "__main__":
    unittest.main()
