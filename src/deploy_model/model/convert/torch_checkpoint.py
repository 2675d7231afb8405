"""Why a torch.save checkpoint is refused: a state dict or a pickled nn.Module needs the model's code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError

# What the user can save instead, in the code that defines the model class.
SAVE_A_PROGRAM = (
    "load it into your nn.Module in the code that defines the class and save a program: "
    "torch.export.save(torch.export.export(model.eval(), example_inputs), 'model.pt2') "
    "(or torch.jit.save(torch.jit.script(model), 'model.pt')), then convert that file"
)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _describe(obj: Any) -> str:
    """A state dict, a checkpoint dict around one, or some other container of tensors, in words."""
    import torch

    if isinstance(obj, dict):
        tensors = [key for key, value in obj.items() if isinstance(value, torch.Tensor)]
        if tensors and len(tensors) == len(obj):
            return f"a PyTorch state dict ({len(tensors)} tensors, e.g. {str(tensors[0])!r})"
        keys = ", ".join(str(key) for key in list(obj)[:5])
        return f"a PyTorch checkpoint dict (keys: {keys})"
    return f"a torch.save file holding a {type(obj).__name__}"


def refuse_checkpoint(source: Path) -> None:
    """Always raises: says what the checkpoint holds, found without running any pickled code."""
    import pickle

    import torch

    try:
        # weights_only=True unpickles tensors and plain containers only; any class is refused
        # before its code runs, so the file is inspected without trusting it.
        obj = torch.load(str(source), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        what = found.group(1) if found else "a Python class"
        raise StageError(
            f"{source} pickles a Python object ({what}, e.g. a whole nn.Module saved with torch.save): "
            f"it was not unpickled, because that runs the class's code and needs that code importable; "
            f"{SAVE_A_PROGRAM}"
        ) from None
    except (RuntimeError, OSError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"{source} is not a readable torch.save file ({first})") from None
    raise StageError(
        f"{source} is {_describe(obj)}: weights without the model's code cannot be converted; "
        f"{SAVE_A_PROGRAM}"
    )
