"""Hydra configuration for the entry points: compose `conf/<name>.yaml` with command-line overrides,
and turn expected failures into one-line errors.

The entry points take positional paths first and Hydra overrides after (`key=value`, `+key=value`,
`~key`), so they compose configs with Hydra's compose API rather than `@hydra.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NoReturn

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

_HERE = Path(__file__).resolve().parent
# An installed wheel carries the configs as asr/conf; a source checkout has them at the top level.
CONF_DIR = next((d for d in (_HERE / "conf", _HERE.parent / "conf") if d.is_dir()), _HERE.parent / "conf")


class UsageError(Exception):
    """A bad command line or configuration value; printed as one line."""


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split argv into positional paths and Hydra overrides (anything with '=' or starting with '~')."""
    paths, overrides = [], []
    for arg in argv:
        (overrides if ("=" in arg or arg.startswith("~")) else paths).append(arg)
    return paths, overrides


def load_config(name: str, overrides: list[str], config_dir: str | Path = CONF_DIR,
                plain_keys: tuple[str, ...] = ()) -> DictConfig:
    """Compose `<config_dir>/<name>.yaml` with `overrides`; raises UsageError with Hydra's message on failure.

    `plain_keys` are top-level keys whose overrides are set as values after composing: Hydra would
    read `model=exp/best.pt` as a choice in the `conf/model/` group of training presets, but for
    transcribe and evaluate `model` is a path.
    """
    plain = {k: v for k, _, v in (o.partition("=") for o in overrides) if k in plain_keys}
    overrides = [o for o in overrides if o.partition("=")[0] not in plain]
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3", job_name=name):
            cfg = compose(config_name=name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(" ".join(str(err).split())) from None
    OmegaConf.set_readonly(cfg, False)
    for key, value in plain.items():
        cfg[key] = None if value in ("", "null") else value
    return cfg


def tool_overrides(overrides: list[str], tool_defaults: dict[str, str], aliases: dict[str, str]) -> list[str]:
    """Overrides for a tool built on an entry point's config: `aliases` keys are renamed to their config
    keys (lm= → decoder.lm=), the tool's own options are added as new keys with `tool_defaults` for
    those not given, and the rest pass through unchanged."""
    given = {o.partition("=")[0].lstrip("+") for o in overrides}
    rewritten = []
    for o in overrides:
        key, _, value = o.partition("=")
        if key in aliases:
            rewritten.append(f"{aliases[key]}={value}")
        elif key in tool_defaults:
            rewritten.append(f"+{o}")
        else:
            rewritten.append(o)
    return rewritten + [f"+{k}={v}" for k, v in tool_defaults.items() if k not in given]


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """A `device` config value (auto | cpu | cuda) → a torch device; auto prefers cuda:<local_rank>."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device=cuda but no CUDA device is available")
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"process {local_rank} of this node needs cuda:{local_rank}, but {torch.cuda.device_count()} CUDA "
                             "device(s) are visible: start at most that many processes per node (torchrun --nproc_per_node) "
                             "or set trainer.device=cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise UsageError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


def fail(message: str, status: int = 1) -> NoReturn:
    """Print `error: message` on stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def one_line(err: BaseException) -> str:
    """The message of an expected error as one line (a DataLoader worker wraps it in a traceback)."""
    message = str(err).strip()
    if "Original Traceback" in message:  # torch's ExceptionWrapper: the last line is "module.Type: message"
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(message.split())


def run_main(main: Callable[[list[str]], int | None], errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run an entry point; UsageError and the given expected error types become one-line errors."""
    try:
        status = main(sys.argv[1:])
    except UsageError as err:
        fail(one_line(err), 2)
    except (OSError, OmegaConfBaseException, *errors) as err:
        fail(one_line(err))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    sys.exit(status or 0)
