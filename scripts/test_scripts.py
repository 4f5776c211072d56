#!/usr/bin/env python3
"""Offline tests of the model scripts' bad-input paths (run by `cargo test`, tests/scripts.rs):

- a .keras archive whose HDF5 lacks a layer: the error names the layer;
- a .keras archive of another architecture, not a zip, without model.weights.h5, without the
  named base layer: each a clear error;
- Xception parity off: the check fails and names the max difference;
- setup with Python 3.9 (or anything outside 3.10-3.13): a clear error naming the versions.

    .qcyn/venv/bin/python scripts/test_scripts.py [-v]

Needs the wheels scripts/setup downloaded (.qcyn/downloads) and the built models.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import build_models  # noqa: E402
import check_parity  # noqa: E402
import kerasless  # noqa: E402

MANIFEST = build_models.tomllib.loads((REPO / "models" / "xception.toml").read_text())
SRC = MANIFEST["source"]


def real_archive() -> bytes:
    return build_models.read_member(REPO / ".qcyn" / "downloads", SRC)


def convert_error(keras_bytes: bytes, base: str = "xception") -> str:
    with self_exit() as caught:
        build_models.xception_weights(keras_bytes, base, "test.keras")
    return caught.message


class self_exit(contextlib.AbstractContextManager):
    """Catches the SystemExit a builder raises and keeps its message."""

    message = ""

    def __exit__(self, kind, value, tb):
        if kind is None:
            raise AssertionError("expected an error, but the archive was accepted")
        if issubclass(kind, SystemExit):
            self.message = str(value)
            return True
        return False


def archive(config: dict, h5_bytes: bytes | None, extra: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("config.json", json.dumps(config))
        if h5_bytes is not None:
            z.writestr("model.weights.h5", h5_bytes)
        for k, v in (extra or {}).items():
            z.writestr(k, v)
    return out.getvalue()


class KerasArchives(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.real = real_archive()

    def test_the_real_archive_converts(self):
        w = build_models.xception_weights(self.real, SRC["keras_layer"], "real.keras")
        self.assertEqual(sum(a.size for v in w.values() for a in v), build_models.XC_PARAMS)

    def test_a_missing_layer_is_named(self):
        import h5py

        z = zipfile.ZipFile(io.BytesIO(self.real))
        config = json.loads(z.read("config.json"))
        base = next(l for l in config["config"]["layers"] if l["config"]["name"] == "xception")
        layers = base["config"]["layers"]
        storage = dict(zip((l["config"]["name"] for l in layers), kerasless.storage_names(layers)))
        with tempfile.TemporaryDirectory() as tmp:
            h5 = Path(tmp) / "w.h5"
            h5.write_bytes(z.read("model.weights.h5"))
            with h5py.File(h5, "r+") as f:
                del f[f"layers/functional/layers/{storage['block5_sepconv2']}"]
            bad = archive(config, h5.read_bytes())
        msg = convert_error(bad)
        self.assertIn("layer `block5_sepconv2` (SeparableConv2D) has no weights", msg)
        self.assertIn(storage["block5_sepconv2"], msg)
        self.assertIn("fix:", msg)

    def test_another_architecture_is_refused(self):
        import h5py

        config = {"class_name": "Functional", "config": {"name": "m", "layers": [
            {"class_name": "Functional", "config": {"name": "xception", "layers": [
                {"class_name": "InputLayer", "config": {"name": "input_layer"}},
                {"class_name": "Conv2D", "config": {"name": "block1_conv1"}},
                {"class_name": "Dense", "config": {"name": "predictions"}},
            ]}},
        ]}}
        with tempfile.TemporaryDirectory() as tmp:
            h5 = Path(tmp) / "w.h5"
            with h5py.File(h5, "w") as f:
                f["layers/functional/layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 16), np.float32)
                f["layers/functional/layers/dense/vars/0"] = np.zeros((16, 10), np.float32)
                f["layers/functional/layers/dense/vars/1"] = np.zeros((10,), np.float32)
            msg = convert_error(archive(config, h5.read_bytes()))
        self.assertIn("is not the Keras Xception base", msg)
        self.assertIn("layer `block1_conv1`", msg)
        self.assertIn("expected [(3, 3, 3, 32)]", msg)
        self.assertIn("layers that Xception does not have: predictions", msg)

    def test_not_a_keras_archive(self):
        self.assertIn("is not a zip archive", convert_error(b"GIF89a, not a model"))
        msg = convert_error(archive({"config": {"layers": []}}, None))
        self.assertIn("has no model.weights.h5", msg)

    def test_a_missing_base_layer_is_named(self):
        msg = convert_error(self.real, base="resnet50")
        self.assertIn("config.json has no layer `resnet50`", msg)
        self.assertIn("xception", msg)


class Parity(unittest.TestCase):
    def test_parity_off_fails_naming_the_max_difference(self):
        want = np.load(REPO / "tests" / "fixtures" / "reference" / "xception_keras" / "ref_out.npy")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "xception_keras").mkdir()
            np.save(Path(tmp) / "xception_keras" / "ref_out.npy", want + np.float32(0.01))
            old = os.environ.get("QCYN_REFERENCE")
            os.environ["QCYN_REFERENCE"] = tmp
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err):
                    ok = check_parity.check_xception()
            finally:
                if old is None:
                    del os.environ["QCYN_REFERENCE"]
                else:
                    os.environ["QCYN_REFERENCE"] = old
        self.assertFalse(ok)
        self.assertIn("max abs difference 0.01", err.getvalue())
        self.assertIn("FAILED", err.getvalue())


class SetupPython(unittest.TestCase):
    def run_setup(self, python: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, QCYN_PYTHON=python)
        return subprocess.run([str(REPO / "scripts" / "setup")], env=env, capture_output=True, text=True, timeout=60)

    def test_python_39_is_refused_clearly(self):
        with tempfile.TemporaryDirectory() as tmp:
            fake = Path(tmp) / "python3.9"
            fake.write_text("#!/bin/sh\necho 3.9\n")
            fake.chmod(0o755)
            done = self.run_setup(str(fake))
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("is Python 3.9, but setup supports Python 3.10, 3.11, 3.12, 3.13 only", done.stderr)
        self.assertIn("QCYN_PYTHON=", done.stderr)

    def test_the_real_python_39_if_installed(self):
        import shutil

        found = [shutil.which("python3.9")] + sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))
        runs = [p for p in found if p and subprocess.run([p, "-V"], capture_output=True).returncode == 0]
        if not runs:
            self.skipTest("no python3.9 on this machine")
        py39 = runs[0]
        done = self.run_setup(py39)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("is Python 3.9", done.stderr)

    def test_a_missing_python_is_named(self):
        done = self.run_setup("/nonexistent/python3")
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("/nonexistent/python3 not found", done.stderr)


class Int8(unittest.TestCase):
    """scripts/quantize_int8.py: ranges rounded outwards (so the pinned sha256 holds across CPUs),
    a graph too far from fp32 refused, the calibration wheel checked."""

    def test_ranges_round_outwards_to_three_digits(self):
        import quantize_int8

        lo = quantize_int8.round_out(np.array([-1.23456, 0.0, 2.71828e-5], np.float32), up=False)
        hi = quantize_int8.round_out(np.array([-1.23456, 0.0, 2.71828e-5], np.float32), up=True)
        np.testing.assert_allclose(lo, [-1.24, 0.0, 2.71e-5], rtol=1e-6)
        np.testing.assert_allclose(hi, [-1.23, 0.0, 2.72e-5], rtol=1e-6)
        # a range that is already round stays as it is
        np.testing.assert_allclose(quantize_int8.round_out(np.array([6.0], np.float32), up=True), [6.0])

    def test_a_graph_below_the_cosine_threshold_is_not_installed(self):
        import quantize_int8

        report = {"calibration_min": 0.95, "calibration_mean": 0.97, "held_out_min": 0.7,
                  "held_out_mean": 0.8, "calibration_images": 28, "held_out_images": 8}
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertFalse(quantize_int8.check("m", report, 0.9))
        self.assertIn("below 0.9", err.getvalue())
        self.assertIn("not installed", err.getvalue())
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertTrue(quantize_int8.check("m", dict(report, held_out_min=0.93), 0.9))

    def test_a_wrong_calibration_wheel_is_refused(self):
        import quantize_int8

        with tempfile.TemporaryDirectory() as d:
            (Path(d) / quantize_int8.SKIMAGE_WHEEL).write_bytes(b"not the wheel")
            with self_exit() as caught:
                quantize_int8.skimage_photos(Path(d), ["astronaut.png"], build_models.sha256_file)
            self.assertIn("sha256 mismatch", caught.message)
            with self_exit() as caught:
                quantize_int8.skimage_photos(Path(d) / "none", ["astronaut.png"], build_models.sha256_file)
            self.assertIn("run scripts/setup", caught.message)

    def test_every_int8_table_is_complete(self):
        for path in sorted((REPO / "models").glob("*.toml")):
            m = build_models.tomllib.loads(path.read_text())
            if "int8" in m:
                q = m["int8"]
                self.assertEqual(len(q["sha256"]), 64, path)
                self.assertTrue(q["file"].endswith("-int8.onnx"), path)
                self.assertTrue(0 < q["min_cosine"] <= 1, path)
                self.assertIn(m["name"], build_models.BUILDERS, path)


if __name__ == "__main__":
    unittest.main()
