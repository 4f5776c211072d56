"""Read PyTorch state_dict files (.pth) into numpy arrays without PyTorch.

Handles both on-disk formats written by ``torch.save``:

* the zip format (PyTorch >= 1.6): ``archive/data.pkl`` plus one ``archive/data/<key>`` member
  per storage;
* the legacy format: a stream of pickles (magic number, protocol version, system info, the
  object itself, the list of storage keys), followed by every storage's raw bytes, each preceded
  by its element count as a little-endian int64.

Only what a state_dict needs is supported: tensors rebuilt with ``torch._utils._rebuild_tensor_v2``
(or ``_rebuild_tensor``), typed storages (FloatStorage, LongStorage, ...), ``OrderedDict`` and
plain containers. Anything else is refused by ``find_class``, so a file cannot run arbitrary code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes may arrive later (legacy format)."""

    def __init__(self, dtype: np.dtype, numel: int | None):
        self.dtype = dtype
        self.numel = numel
        self.array: np.ndarray | None = None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialise(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise ValueError("storage data missing")
        if len(self.size) == 0:
            return np.array(base[self.offset], dtype=base.dtype)
        item = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _Storage], zip_reader=None):
        super().__init__(f)
        self.storages = storages
        self.zip_reader = zip_reader

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a state_dict")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        numel = pid[4] if len(pid) > 4 else None
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        st = self.storages.get(key)
        if st is None:
            st = _Storage(storage_type.dtype, numel)
            if self.zip_reader is not None:
                st.array = self.zip_reader(key, st.dtype)
            self.storages[key] = st
        return st


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    return obj


def _load_legacy(data: bytes):
    f = io.BytesIO(data)

    def plain(fobj):
        return _Unpickler(fobj, {}).load()

    magic = plain(f)
    if magic != LEGACY_MAGIC:
        raise ValueError("not a legacy PyTorch file (bad magic number)")
    protocol = plain(f)
    if protocol != 1001:
        raise ValueError(f"unsupported legacy protocol version {protocol}")
    plain(f)  # sys_info: endianness, type sizes
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(f, storages).load()
    keys = plain(f)
    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        st = storages[str(key)]
        nbytes = numel * st.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise ValueError(f"truncated storage {key}")
        st.array = np.frombuffer(buf, dtype=st.dtype.newbyteorder("<"))
    return _materialise(obj)


def _load_zip(path_or_bytes):
    zf = zipfile.ZipFile(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
    names = zf.namelist()
    pkl = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
    prefix = pkl[: -len("data.pkl")]

    def reader(key, dtype):
        return np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=dtype.newbyteorder("<"))

    with zf.open(pkl) as f:
        obj = _Unpickler(io.BytesIO(f.read()), {}, zip_reader=reader).load()
    return _materialise(obj)


def load_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Parse the bytes of a .pth file into {name: numpy array}."""
    if data[:4] == b"PK\x03\x04":
        return _load_zip(data)
    return _load_legacy(data)
