import os
import sys

import pytest
import torch

# Without a GPU, Triton kernels run through the interpreter (set before triton is imported; torch does not
# import it). On a GPU machine the real kernels run.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(__file__))


def _patch_triton_interpreter_scalars() -> None:
    """Triton 3.6's interpreter calls int() on 1-element arrays (dynamic loop bounds), which numpy >= 2.4
    refuses; convert through the single element instead. Test-only: the interpreter is a testing tool."""
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        tensor.__index__ = lambda self: int(self.handle.data.reshape(-1)[0])

    interpreter._patch_lang_tensor = patched


if os.environ.get("TRITON_INTERPRET") == "1":
    _patch_triton_interpreter_scalars()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: run through the device tool")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
