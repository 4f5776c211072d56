"""Read the weights of a Keras 3 ``.keras`` archive into numpy, without TensorFlow or Keras.

A ``.keras`` file is a zip holding ``config.json`` (the layer graph) and ``model.weights.h5``.
Keras 3 does not store a layer's weights under its name: it stores them under the snake-cased
class name of the layer, numbered in the order the layers appear in the model (``conv2d``,
``conv2d_1``, …, ``separable_conv2d_33``), each as ``vars/0``, ``vars/1``, …. So the config is
read for that order, and every layer's weights are returned under the name the config gives it
(``block1_conv1``), which is what an architecture is written against.

    load_layers(keras_bytes, base="xception") -> Layers(weights, paths, classes)

Errors are ``KerasError`` with a message that names the archive member, the layer and the fix.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

from dataclasses import dataclass, field

import numpy as np


class KerasError(Exception):
    """A .keras archive that cannot be read as the architecture expects."""


@dataclass
class Layers:
    """The layers of one (nested) Keras model, by the name its config gives each."""

    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)  # in Keras' vars order
    paths: dict[str, str] = field(default_factory=dict)  # HDF5 group of each layer's vars
    classes: dict[str, str] = field(default_factory=dict)  # Keras class of every layer


def snake_case(class_name: str) -> str:
    """Keras' ``naming.to_snake_case``: ``SeparableConv2D`` -> ``separable_conv2d``."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def storage_names(layers: list[dict]) -> list[str]:
    """The HDF5 group name of each layer of a list, as Keras 3 numbers them."""
    used: dict[str, int] = {}
    out = []
    for layer in layers:
        name = snake_case(layer["class_name"])
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        out.append(name)
    return out


def layer_name(layer: dict) -> str:
    return layer.get("name") or layer["config"]["name"]


def load_layers(keras_bytes: bytes, base: str | None = None, what: str = ".keras archive") -> Layers:
    """Every layer's weights, by layer name. With ``base``, the layers of the nested model of that
    name (e.g. the frozen ``xception`` base inside a fine-tuned model); without, the top level."""
    import h5py  # only the model builder needs it

    try:
        z = zipfile.ZipFile(io.BytesIO(keras_bytes))
    except zipfile.BadZipFile as e:
        raise KerasError(f"{what} is not a zip archive ({e}); a Keras 3 .keras file is a zip with config.json and model.weights.h5") from e
    names = set(z.namelist())
    for member in ("config.json", "model.weights.h5"):
        if member not in names:
            raise KerasError(f"{what} has no {member} (members: {', '.join(sorted(names))}); "
                             "it is not a Keras 3 .keras file (Keras 2 .h5 models are not supported)")
    config = json.loads(z.read("config.json"))
    layers = config["config"]["layers"]
    group = "layers"
    if base is not None:
        top = storage_names(layers)
        found = [(l, s) for l, s in zip(layers, top) if layer_name(l) == base]
        if not found:
            raise KerasError(f"{what}: config.json has no layer `{base}` (top-level layers: "
                             f"{', '.join(layer_name(l) for l in layers)}); is this the right model?")
        base_layer, base_storage = found[0]
        if "layers" not in base_layer["config"]:
            raise KerasError(f"{what}: layer `{base}` is a {base_layer['class_name']}, not a nested model")
        layers = base_layer["config"]["layers"]
        group = f"layers/{base_storage}/layers"
    out = Layers(classes={layer_name(l): l["class_name"] for l in layers})
    with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h5:
        if group not in h5:
            raise KerasError(f"{what}: model.weights.h5 has no group {group}; the weights do not belong to config.json")
        for layer, storage in zip(layers, storage_names(layers)):
            path = f"{group}/{storage}/vars"
            out.paths[layer_name(layer)] = path
            if path in h5 and len(h5[path]) > 0:
                vars_ = h5[path]
                out.weights[layer_name(layer)] = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
    return out
