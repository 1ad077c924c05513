"""Load pickle files without running code from them.

``pickle.load`` calls any function a pickle names, so a pickle from someone else can do anything
on the reader's machine. CIFAR-10 batches and the Kaggle test file need only plain containers and
numpy arrays; this unpickler admits exactly those and refuses everything else.
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np

from .errors import CifarResnetError

# (module, name) pairs that numpy arrays and dtypes pickle into, across numpy 1.x and 2.x, and
# the text codec that protocol-2 pickles of bytes use. None of them can touch files or run code.
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle asks for a function or class that a data file never needs."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        canonical = module.replace("numpy.core", "numpy._core", 1) if module.startswith("numpy.core") else module
        if (canonical, name) not in _ALLOWED:
            raise RefusedPickleError(f"it asks to load '{module}.{name}', which a data file never needs")
        owner = np if canonical == "numpy" else importlib.import_module(canonical)
        return getattr(owner, name)


def load_pickle(path: str | Path, what: str = "pickle file"):
    """Unpickle ``path`` admitting only numpy arrays and builtin containers.

    Python 2 pickles (the official CIFAR-10 batches) load too: their text becomes str. Anything
    unreadable, truncated or asking for other code raises CifarResnetError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarResnetError(f"{what} {path} does not exist")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except RefusedPickleError as e:
        raise CifarResnetError(f"{what} {path} was refused: {e}. It may be malicious or not a data file; "
                               f"do not open it with pickle.load") from None
    except pickle.UnpicklingError as e:
        raise CifarResnetError(f"{what} {path} is not a readable pickle ({e}): re-download or re-create it") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError, OSError) as e:
        reason = "it is empty or truncated" if isinstance(e, EOFError) else f"{type(e).__name__}: {e}"
        raise CifarResnetError(f"{what} {path} could not be read ({reason}): re-download or re-create it") from None
