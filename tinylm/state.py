"""Resumable training state: weights, AdamW's moments, every RNG, and the loop's state (the learning rate is a
function of the step, so there is no schedule to save).

One checkpoint is a folder OUT/checkpoints/step-00000120/ holding model.safetensors, optimizer.safetensors,
rng.safetensors and trainer_state.json: safetensors and JSON, never a pickle. It is built in a temporary folder,
fsynced and renamed into place, so a kill at any moment leaves the previous checkpoints whole. The data position
is not stored as a reader state: batches are a pure function of the step (see pretrain/finetune), so a resume
jumps straight to its step without replaying the data already seen.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tinylm.checkpoint import commit_dir, load_weights, read_tensors, stored_state
from tinylm.errors import TinyLMError
from tinylm.files import CHECKPOINTS, WEIGHTS_FILE, read_json, write_json

OPTIMIZER_FILE, RNG_FILE, STATE_FILE = "optimizer.safetensors", "rng.safetensors", "trainer_state.json"
AVERAGE_FILE = "weight_average.safetensors"  # the moving average of the weights, where the run keeps one
FORMAT = 2  # trainer_state.json's layout; 1 (no "format" key) held an LR scheduler and string-keyed counters


def checkpoint_root(out_dir: Path) -> Path:
    return Path(out_dir) / CHECKPOINTS


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint (a renamed-into-place folder; temporary ones start with a dot)."""
    root = checkpoint_root(out_dir)
    found = sorted(root.glob("step-*")) if root.is_dir() else []
    found = [p for p in found if (p / STATE_FILE).is_file()]
    return found[-1] if found else None


def remove_checkpoints(out_dir: Path):
    """A finished (or replaced) run's resumable checkpoints: its model folder is the hand-off."""
    shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)


def save_state(out_dir: Path, model, optimizer, loop: dict, stage: dict, run_args: dict, keep: int,
               average=None) -> Path:
    """Write checkpoints/step-N atomically and keep only the newest `keep` checkpoints. loop is the loop's state
    (its step first of all), stage the stage's own (e.g. the best epoch so far)."""
    root = checkpoint_root(out_dir)
    folder = root / f"step-{loop['step']:08d}"
    tmp = root / f".{folder.name}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(stored_state(model), str(tmp / WEIGHTS_FILE))
        tensors, groups = _optimizer_tensors(optimizer)
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        save_file(_rng_tensors(), str(tmp / RNG_FILE))
        if average is not None:
            save_file(average.tensors(), str(tmp / AVERAGE_FILE))
        state = {"format": FORMAT, "loop": loop, "stage": stage, "run_args": run_args, "param_groups": groups,
                 "rng": _rng_json()}
        write_json(tmp / STATE_FILE, state)
        commit_dir(tmp, folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(out_dir)
        kept = f"; the last complete checkpoint {previous} is intact" if previous else ""
        raise TinyLMError(f"cannot write checkpoint {folder}: {e.strerror or e}{kept}") from None
    older = sorted(p for p in root.glob("step-*") if p != folder)
    for old in older[:max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def saved_run_args(folder: Path) -> dict:
    """The identity of the run that wrote the checkpoint, read before anything is restored."""
    state = read_state(folder)
    if not isinstance(state.get("run_args"), dict):
        raise TinyLMError(f"{folder / STATE_FILE} lacks 'run_args'; the checkpoint is damaged")
    return state["run_args"]


def read_state(folder: Path) -> dict:
    state = read_json(folder / STATE_FILE)
    if state.get("format") != FORMAT:
        raise TinyLMError(f"{folder} was written by an earlier tinylm, whose resumable checkpoints this version "
                          "cannot continue; start the run again with --overwrite")
    return state


def load_state(folder: Path, model, optimizer, loop_template: dict, average=None) -> dict:
    """Restore everything in place (with the weights' moving average, where the run keeps one); returns
    {"loop", "stage", "run_args"}, the loop's state checked against loop_template (the fields it must have)."""
    state = read_state(folder)
    for key in ("loop", "stage", "run_args", "param_groups", "rng"):
        if key not in state:
            raise TinyLMError(f"{folder / STATE_FILE} lacks {key!r}; the checkpoint is damaged")
    load_weights(model, folder / WEIGHTS_FILE)
    tensors = read_tensors(folder / OPTIMIZER_FILE)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param: dict[int, dict] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = tensor
    for index, values in per_param.items():
        if index >= len(params) or any(t.shape != params[index].shape for k, t in values.items() if k != "step"):
            raise TinyLMError(f"{folder / OPTIMIZER_FILE} does not match the model; was it written by another run?")
    # JSON from a user's disk is checked against what this run would write before anything is restored.
    where = folder / STATE_FILE
    template = _optimizer_tensors(optimizer)[1]
    if not isinstance(state["param_groups"], list) or len(state["param_groups"]) != len(template):
        raise TinyLMError(f"{where}: param_groups do not match this optimizer; was it written by another run?")
    for saved, expected in zip(state["param_groups"], template):
        _check_like(saved, expected, f"{where}: param_groups")
    _check_like(state["loop"], loop_template, f"{where}: loop")
    if not isinstance(state["stage"], dict):
        raise TinyLMError(f"{where}: stage must be a JSON object; the checkpoint is damaged")
    if average is not None:
        average.load(read_tensors(folder / AVERAGE_FILE), folder / AVERAGE_FILE)
    optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    _restore_rng(read_tensors(folder / RNG_FILE), state["rng"])
    return {"loop": state["loop"], "stage": state["stage"], "run_args": state["run_args"]}


def _check_like(saved, expected, where: str):
    """Same keys, and values of the same JSON kind, as the dict this run would write."""
    if not isinstance(saved, dict) or set(saved) != set(expected):
        raise TinyLMError(f"{where} has other fields than expected; the checkpoint is damaged or foreign")
    for key, value in expected.items():
        kind = (int, float) if isinstance(value, (int, float)) and not isinstance(value, bool) else \
            (list, tuple) if isinstance(value, (list, tuple)) else type(value)
        if value is not None and saved[key] is not None and not isinstance(saved[key], kind):
            raise TinyLMError(f"{where}.{key} has the wrong type ({type(saved[key]).__name__})")


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    saved = optimizer.state_dict()
    tensors = {f"{index}.{key}": value.detach().contiguous().cpu()
               for index, values in saved["state"].items() for key, value in values.items()
               if isinstance(value, torch.Tensor)}
    return tensors, saved["param_groups"]


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    return tensors


def _rng_json() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"numpy": [kind, keys.tolist(), pos, has_gauss, cached], "python": [version, list(internal), gauss]}


def _restore_rng(tensors: dict, saved: dict):
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))

