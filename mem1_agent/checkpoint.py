"""Atomic, verified, pickle-free training checkpoints.

A checkpoint is a *snapshot*: a folder ``<dir>/checkpoint-<id>/`` holding

* ``model.safetensors``: the model's parameters and buffers (with LoRA only the trainable ones:
  adapters and value head), tensors that share storage (tied embeddings) stored once;
* ``state.safetensors``: every other tensor (optimizer moments, RNG states of torch);
* ``state.json``: everything else as JSON (step, free-form ``extra``, scheduler state, optimizer
  hyper-parameters, Python/NumPy RNG states as lists and ints), pointing into ``state.safetensors``
  by name for the tensors it needs;

and a manifest ``<dir>/checkpoint.json`` naming the folder and the size and SHA-256 of each file.
An FSDP2-sharded model is stored as each process's shards (``model.rank<i>.safetensors``,
``state.rank<i>.safetensors``) in the same snapshot, committed once every process has written.

Nothing is ever unpickled: safetensors and JSON are data formats, and a file the manifest does not
describe (an old ``checkpoint.pt``, an unknown name or extension) is refused with a clear error.

The manifest is the commit point. The files are written into a temporary folder, fsync'ed, the
folder renamed into place, then the manifest is written to a temporary name and renamed over the
old one (``os.replace`` is atomic on POSIX); only then is the previous snapshot removed. Killing
training at any moment leaves the previous checkpoint or the new one, never a torn one; what a kill
leaves behind (temporary files, an unreferenced snapshot) is removed by :func:`clean_stale`, which
the trainer calls on start. At load every file's hash is checked against the manifest, so flipped
bytes give an error naming the file instead of silently wrong weights. A full disk gives
``no space left on <dir> (needed N bytes)`` and leaves the previous checkpoint as it was.

The same mechanism stores other tensor sets of a run (the KL reference of ``sft+ppo``) under
another name, with :func:`save_tensors` / :func:`load_tensors`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .sharding import is_dtensor as is_sharded_tensor
from .sharding import is_sharded, like_param, local

#: Manifest of the training checkpoint inside an output directory.
CHECKPOINT_FILE = "checkpoint.json"
#: Files of the pickle format written by earlier versions; refused, never loaded.
LEGACY_FILES = ("checkpoint.pt", "reference.pt")
FORMAT = "mem1-checkpoint"
VERSION = 1
#: Snapshot names in use (a snapshot ``NAME`` has the manifest ``NAME.json``).
SNAPSHOT_NAMES = ("checkpoint", "reference")
_ALLOWED_FILE = re.compile(r"^[a-z0-9_.-]+\.(safetensors|json)$")
_MAX_JSON_BYTES = 64 << 20
_CHUNK = 1 << 20


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read (damaged, refused format, no space left)."""


# -- JSON trees with tensors held aside ------------------------------------------------------


def encode_tree(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """``obj`` as JSON-able data; tensors go into ``tensors`` under their path, tuples and
    non-string-keyed dicts are tagged so :func:`decode_tree` gives back the same structure."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = local(obj).detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_tree(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_tree(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode_tree(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__items__": [[encode_tree(k, tensors, f"{path}.key{i}"), encode_tree(v, tensors, f"{path}.{i}")] for i, (k, v) in enumerate(obj.items())]}
    raise CheckpointError(f"cannot store a {type(obj).__name__} (at {path}) in a checkpoint: only tensors, numbers, strings, lists and dicts")


def decode_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_tree`; unknown tags are refused."""
    if isinstance(obj, list):
        return [decode_tree(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    tags = [k for k in obj if k.startswith("__")]
    if not tags:
        return {k: decode_tree(v, tensors) for k, v in obj.items()}
    tag = tags[0]
    if tag == "__tensor__":
        if obj[tag] not in tensors:
            raise CheckpointError(f"checkpoint state refers to a tensor {obj[tag]!r} that is not stored")
        return tensors[obj[tag]]
    if tag == "__ndarray__":
        return np.asarray(obj[tag], dtype=np.dtype(obj["dtype"]))
    if tag == "__tuple__":
        return tuple(decode_tree(v, tensors) for v in obj[tag])
    if tag == "__items__":
        return {_hashable(decode_tree(k, tensors)): decode_tree(v, tensors) for k, v in obj[tag]}
    raise CheckpointError(f"unknown entry {tag!r} in checkpoint state")


def _hashable(key: Any) -> Any:
    if isinstance(key, (dict, list)):
        raise CheckpointError(f"checkpoint state has an unhashable key {key!r}")
    return key


# -- snapshots: files + hashed manifest --------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _no_space(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _rank_world(accelerator: Any) -> tuple[int, int]:
    if accelerator is None:
        return 0, 1
    return accelerator.process_index, accelerator.num_processes


def _broadcast(accelerator: Any, value: Any) -> Any:
    """The main process's ``value`` on every process (small Python objects between the run's own processes)."""
    if _rank_world(accelerator)[1] == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _gather(accelerator: Any, value: Any) -> list[Any]:
    if _rank_world(accelerator)[1] == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def _describe(err: OSError, directory: Path, needed: int) -> str:
    if _no_space(err):
        return f"no space left on {directory} (needed {needed} bytes)"
    return f"cannot write checkpoint in {directory}: {err}"


def _write_files(folder: Path, tensor_files: dict[str, dict[str, torch.Tensor]], texts: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """Write, fsync and hash the files; their manifest entries."""
    files: dict[str, dict[str, Any]] = {}
    for fname, tensors in tensor_files.items():
        save_file(tensors, str(folder / fname), metadata={"format": FORMAT})
    for fname, text in texts.items():
        (folder / fname).write_bytes(text)
    for fname in [*tensor_files, *texts]:
        with open(folder / fname, "rb+") as fh:
            os.fsync(fh.fileno())
        files[fname] = {"sha256": _sha256(folder / fname), "bytes": (folder / fname).stat().st_size}
    return files


def _commit(directory: Path, name: str, folder: str, files: dict[str, dict[str, Any]]) -> None:
    """Rename the written folder into place and point the manifest at it; the previous snapshot goes."""
    tmp = directory / f".{folder}.tmp"
    manifest_tmp = directory / f".{name}.json.tmp-{os.getpid()}"
    old = _current(directory, name) if (directory / f"{name}.json").is_file() else None
    committed = False
    try:
        _fsync_dir(tmp)
        os.rename(tmp, directory / folder)
        manifest = {"format": FORMAT, "version": VERSION, "snapshot": folder, "files": files}
        manifest_tmp.write_text(json.dumps(manifest, indent=1))
        with open(manifest_tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(manifest_tmp, directory / f"{name}.json")
        committed = True
        _fsync_dir(directory)
    finally:
        manifest_tmp.unlink(missing_ok=True)
        if not committed:  # the previous manifest still names the previous snapshot
            shutil.rmtree(directory / folder, ignore_errors=True)
    if old is not None and old != folder:
        shutil.rmtree(directory / old, ignore_errors=True)


def write_snapshot(
    directory: str | os.PathLike,
    name: str,
    tensor_files: dict[str, dict[str, torch.Tensor]],
    json_files: dict[str, Any],
    accelerator: Any = None,
) -> Path:
    """Write snapshot ``name`` of ``directory`` atomically; returns its manifest path.

    ``tensor_files`` maps ``*.safetensors`` file names to tensor dicts, ``json_files`` maps
    ``*.json`` file names to JSON-able data. The previous snapshot of the same name is replaced
    only once the new one is complete on disk. With an ``accelerator`` of several processes the
    call is collective: each process writes the files it passes (sharded state: distinct names
    per process), the main process commits the manifest once all have succeeded.
    """
    directory = Path(directory)
    rank, world = _rank_world(accelerator)
    texts = {fname: json.dumps(data, allow_nan=True).encode() for fname, data in json_files.items()}
    needed = sum(_tensor_bytes(t) for t in tensor_files.values()) + sum(len(t) for t in texts.values()) + 4096
    needed = sum(_gather(accelerator, needed))
    plan: tuple[str | None, str | None] = (None, None)
    if rank == 0:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(directory).free < needed:
                plan = (None, f"no space left on {directory} (needed {needed} bytes)")
            else:
                folder = f"{name}-{secrets.token_hex(6)}"
                (directory / f".{folder}.tmp").mkdir()
                plan = (folder, None)
        except OSError as err:
            plan = (None, _describe(err, directory, needed))
    folder, error = _broadcast(accelerator, plan)
    if error is not None:
        raise CheckpointError(error)
    tmp = directory / f".{folder}.tmp"
    files: dict[str, dict[str, Any]] = {}
    try:
        try:
            files = _write_files(tmp, tensor_files, texts)
        except OSError as err:
            error = _describe(err, directory, needed)
        outcomes = _gather(accelerator, (files, error))
        if rank == 0:
            errors = [e for _, e in outcomes if e is not None]
            error = errors[0] if errors else None
            if error is None:
                merged = {k: v for f, _ in outcomes for k, v in f.items()}
                try:
                    _commit(directory, name, folder, merged)
                except OSError as err:
                    error = _describe(err, directory, needed)
    finally:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
    error = _broadcast(accelerator, error)
    if error is not None:
        raise CheckpointError(error)
    return directory / f"{name}.json"


def _current(directory: Path, name: str) -> str | None:
    try:
        return read_manifest(directory, name, verify=False)["snapshot"]
    except CheckpointError:
        return None


def read_manifest(directory: str | os.PathLike, name: str = "checkpoint", verify: bool = True, only: set[str] | None = None) -> dict[str, Any]:
    """The manifest of snapshot ``name`` (checked: format, names, and with ``verify`` the hash of
    every file, or of the files in ``only``)."""
    directory = Path(directory)
    path = directory / f"{name}.json"
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise CheckpointError(f"{path} is too large to be a checkpoint manifest")
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read checkpoint manifest {path}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a mem1 checkpoint manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {manifest.get('version')!r}; this version reads {VERSION}")
    folder, files = manifest.get("snapshot"), manifest.get("files")
    if not isinstance(folder, str) or not re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{12}}", folder) or not isinstance(files, dict):
        raise CheckpointError(f"{path} names no valid snapshot folder")
    for fname, info in files.items():
        if not _ALLOWED_FILE.match(fname) or not isinstance(info, dict):
            raise CheckpointError(f"{path} lists {fname!r}: only .safetensors and .json files are read")
    if verify:
        snapshot = directory / folder
        present = {p.name for p in snapshot.iterdir()} if snapshot.is_dir() else set()
        extra = sorted(present - set(files))
        if extra:
            raise CheckpointError(f"{snapshot} holds files the manifest does not list ({', '.join(extra)}); refusing to load it")
        for fname, info in files.items():
            if only is not None and fname not in only:
                continue
            file = snapshot / fname
            if not file.is_file():
                raise CheckpointError(f"checkpoint file {file} is missing")
            if file.stat().st_size != info.get("bytes") or _sha256(file) != info.get("sha256"):
                raise CheckpointError(f"checkpoint file {file} is damaged (its SHA-256 does not match {path})")
    return manifest


def _refuse_legacy(directory: Path) -> None:
    for fname in LEGACY_FILES:
        if (directory / fname).exists():
            raise CheckpointError(
                f"{directory / fname} is a pickle checkpoint of an older mem1 version; it is not loaded "
                "(unpickling can run arbitrary code). Move it away or use a new train.output_dir."
            )


def read_snapshot(directory: str | os.PathLike, name: str, only: set[str] | None = None) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]] | None:
    """Verified contents of snapshot ``name``: (json files, tensor files), or None when there is none.

    ``only``: read (and verify) just these files, e.g. one process's shards.
    """
    directory = Path(directory)
    _refuse_legacy(directory)
    if not (directory / f"{name}.json").is_file():
        return None
    manifest = read_manifest(directory, name, only=only)
    snapshot = directory / manifest["snapshot"]
    jsons, tensors = {}, {}
    for fname in manifest["files"]:
        if only is not None and fname not in only:
            continue
        try:
            if fname.endswith(".json"):
                jsons[fname] = json.loads((snapshot / fname).read_text())
            else:
                tensors[fname] = load_file(str(snapshot / fname))
        except Exception as err:  # a hashed file that still does not parse was written wrong
            raise CheckpointError(f"cannot read checkpoint file {snapshot / fname}: {type(err).__name__}: {err}") from None
    return jsons, tensors


def clean_stale(directory: str | os.PathLike) -> list[str]:
    """Remove what a killed save leaves: temporary files/folders and snapshots no manifest names.

    Only names this module writes are touched; with a manifest that cannot be read nothing of
    its snapshot name is removed. Returns the names removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    names = "|".join(SNAPSHOT_NAMES)
    temp = re.compile(rf"^\.(({names})-[0-9a-f]{{12}}\.tmp|({names})\.json\.tmp-\d+|({names})\.pt\.tmp-\d+)$")
    # Per snapshot name, the folder its manifest names; absent when the manifest is unreadable
    # (then none of its folders is touched: the user may still recover one).
    current: dict[str, str | None] = {}
    for name in SNAPSHOT_NAMES:
        if not (directory / f"{name}.json").is_file():
            current[name] = None
        elif (folder := _current(directory, name)) is not None:
            current[name] = folder
    for entry in directory.iterdir():
        match = re.fullmatch(rf"({names})-[0-9a-f]{{12}}", entry.name)
        unreferenced = match is not None and match.group(1) in current and current[match.group(1)] != entry.name
        if temp.match(entry.name) or (unreferenced and entry.is_dir()):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def save_tensors(directory: str | os.PathLike, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> Path:
    """Store a tensor set (e.g. the KL reference) as snapshot ``name``, atomically and hashed."""
    return write_snapshot(directory, name, {"model.safetensors": {k: v.detach().cpu().contiguous() for k, v in tensors.items()}}, {"meta.json": dict(meta or {})})


def load_tensors(directory: str | os.PathLike, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """What :func:`save_tensors` stored: (tensors, meta); :class:`CheckpointError` when missing or damaged."""
    found = read_snapshot(directory, name)
    if found is None:
        raise CheckpointError(f"{Path(directory) / (name + '.json')} is missing")
    jsons, tensors = found
    return tensors.get("model.safetensors", {}), jsons.get("meta.json", {})


# -- RNG states --------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (and CUDA when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- model state ------------------------------------------------------------------------------


def _unwrap(model: Any, accelerator: Any) -> Any:
    return accelerator.unwrap_model(model) if accelerator is not None else getattr(model, "module", model)


def model_tensors(module: torch.nn.Module, trainable_only: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict to store, and aliases (name -> stored name) of tensors sharing storage.

    With ``trainable_only`` (LoRA) only parameters with ``requires_grad`` are kept: the frozen
    base weights come from the base model at load.
    """
    state = {k: local(v) for k, v in module.state_dict().items()}
    if trainable_only:
        keep = {n for n, p in module.named_parameters() if p.requires_grad}
        state = {k: v for k, v in state.items() if k in keep}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype], str] = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype) if v.numel() else None
        if key is not None and key in seen:
            aliases[k] = seen[key]
            continue
        if key is not None:
            seen[key] = k
        tensors[k] = v.detach().cpu().contiguous()
    return tensors, aliases


def load_model_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], aliases: dict[str, str], trainable_only: bool, where: str) -> None:
    """Load what :func:`model_tensors` stored, refusing a checkpoint of another model shape."""
    state = dict(tensors)
    for alias, target in aliases.items():
        if target not in state:
            raise CheckpointError(f"{where}: alias {alias!r} points at missing tensor {target!r}")
        state[alias] = state[target]
    current = module.state_dict()
    expected = set(current)
    if trainable_only:
        expected = {n for n, p in module.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{where} does not match the model: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''} (another model or model.lora setting?)"
        )
    if any(is_sharded_tensor(v) for v in current.values()):
        # FSDP2: each process holds its shards; they go back in place (same layout as saved).
        for k, v in state.items():
            target = local(current[k])
            if target.shape != v.shape:
                raise CheckpointError(f"{where}: shard {k} has shape {tuple(v.shape)}, the model's is {tuple(target.shape)}")
        with torch.no_grad():
            for k in expected:
                local(current[k]).copy_(state[k])
        return
    try:
        module.load_state_dict(state, strict=not trainable_only)
    except RuntimeError as err:
        raise CheckpointError(f"{where} does not fit the model: {err}") from None


def _sharded_like_params(state: dict[str, Any], optimizer: Any) -> dict[str, Any]:
    """Optimizer state read from local shards, made ``DTensor``s again where the parameters are."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in (state.get("state") or {}).items():
        if isinstance(index, int) and index < len(params) and isinstance(entry, dict):
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    entry[key] = like_param(value, params[index])
    return state


# -- training checkpoints ------------------------------------------------------------------------


def save_checkpoint(
    directory: str | os.PathLike,
    model: Any,
    step: int,
    optimizer: Any = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
    accelerator: Any = None,
    generator: torch.Generator | None = None,
    trainable_only: bool = False,
) -> Path:
    """Write the checkpoint of ``step`` atomically (collective: call it on every process).

    ``generator`` (e.g. the sampling generator) is saved with each process's RNG state;
    ``trainable_only`` stores only parameters that require grad (LoRA adapters and value head).
    An FSDP2-sharded model is stored sharded: each process writes its own shards of the
    parameters and optimizer state (``model.rank<i>.safetensors``, ``state.rank<i>.safetensors``).
    """
    directory = Path(directory)
    rank, world = _rank_world(accelerator)
    module = _unwrap(model, accelerator)
    sharded = world > 1 and is_sharded(module)
    rng = {"rng": rng_state(), "generator": generator.get_state() if generator is not None else None}
    rngs = _gather(accelerator, rng)
    tensor_files: dict[str, dict[str, torch.Tensor]] = {}
    json_files: dict[str, Any] = {}
    error = None
    if sharded or rank == 0:
        try:
            weights, aliases = model_tensors(module, trainable_only)
            tensors: dict[str, torch.Tensor] = {}
            state = encode_tree(
                {
                    "step": int(step),
                    "extra": dict(extra or {}),
                    "optimizer": optimizer.state_dict() if optimizer is not None else None,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": list(rngs),
                },
                tensors,
                "state",
            )
            state["params"] = {"trainable_only": bool(trainable_only), "aliases": aliases, "shards": world if sharded else 0}
            suffix = f".rank{rank}" if sharded else ""
            tensor_files = {f"model{suffix}.safetensors": weights, f"state{suffix}.safetensors": tensors}
            json_files = {"state.json": state} if rank == 0 else {}
        except CheckpointError as err:
            error = str(err)
    errors = [e for e in _gather(accelerator, error) if e is not None]
    if errors:
        raise CheckpointError(errors[0])
    return write_snapshot(directory, "checkpoint", tensor_files, json_files, accelerator)


def has_checkpoint(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a checkpoint manifest."""
    return (Path(directory) / CHECKPOINT_FILE).is_file()


def _read_checkpoint(directory: Path, rank: int = 0, world: int = 1) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """(state, model tensors, state tensors) of this process; sharded checkpoints need the same process count."""
    found = read_snapshot(directory, "checkpoint", only={"state.json"})
    if found is None:
        return None
    raw = found[0].get("state.json")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{directory / CHECKPOINT_FILE} lacks state.json")
    params = raw.pop("params", {}) if isinstance(raw.get("params"), dict) else {}
    shards = int(params.get("shards") or 0)
    if shards and shards != world:
        raise CheckpointError(
            f"{directory / CHECKPOINT_FILE} holds FSDP state sharded over {shards} processes; resume it with "
            f"{shards} processes (this run has {world})"
        )
    suffix = f".rank{rank}" if shards else ""
    names = {f"model{suffix}.safetensors", f"state{suffix}.safetensors"}
    _, tensors = read_snapshot(directory, "checkpoint", only=names)
    if f"model{suffix}.safetensors" not in tensors:
        raise CheckpointError(f"{directory / CHECKPOINT_FILE} lacks model{suffix}.safetensors")
    state_tensors = tensors.get(f"state{suffix}.safetensors", {})
    state = decode_tree(raw, state_tensors)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{directory / CHECKPOINT_FILE}: state.json has no step")
    state["params"] = params
    return state, tensors[f"model{suffix}.safetensors"], state_tensors


def checkpoint_info(directory: str | os.PathLike) -> dict[str, Any] | None:
    """``{"step", "extra"}`` of ``directory``'s checkpoint (its verified ``state.json`` only, so any
    process can read it, whatever the number of shards), or None without one."""
    found = read_snapshot(Path(directory), "checkpoint", only={"state.json"})
    if found is None:
        return None
    raw = found[0].get("state.json")
    if not isinstance(raw, dict) or not isinstance(raw.get("step"), int):
        raise CheckpointError(f"{Path(directory) / CHECKPOINT_FILE}: state.json has no step")
    return {"step": raw["step"], "extra": dict(decode_tree(raw.get("extra") or {}, {}))}


def load_checkpoint(
    directory: str | os.PathLike,
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    accelerator: Any = None,
    generator: torch.Generator | None = None,
) -> dict[str, Any] | None:
    """Restore a checkpoint into ``model``/``optimizer``/``scheduler`` and the RNGs.

    Returns ``{"step": ..., "extra": {...}}``, or None when there is no checkpoint.
    Raises :class:`CheckpointError` (naming the file) when one exists but is damaged, of an
    old pickle format, or of another model.
    """
    directory = Path(directory)
    rank, world = _rank_world(accelerator)
    found = _read_checkpoint(directory, rank, world)
    if found is None:
        return None
    state, weights, _ = found
    params = state["params"]
    load_model_tensors(
        _unwrap(model, accelerator), weights, dict(params.get("aliases") or {}), bool(params.get("trainable_only")),
        str(directory / CHECKPOINT_FILE),
    )
    try:
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(_sharded_like_params(state["optimizer"], optimizer))
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{directory / CHECKPOINT_FILE}: optimizer/scheduler state does not fit: {err}") from None
    rngs = state.get("rng") or []
    # A run resumed on a different number of processes keeps its seeded RNGs for the extra ranks.
    if rank < len(rngs):
        set_rng_state(rngs[rank]["rng"])
        if generator is not None and rngs[rank].get("generator") is not None:
            generator.set_state(rngs[rank]["generator"])
    return {"step": int(state["step"]), "extra": dict(state.get("extra") or {})}
