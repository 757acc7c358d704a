"""The `ddavs-rt` command.

`ddavs-rt [--demo | --camera ... | --rtsp ... | --file ...]` runs the streaming runtime;
`ddavs-rt SUBCOMMAND ...` runs one of the offline jobs. Each subcommand lives in the module that
owns its concern and exposes `add_arguments(parser)` and `run(args) -> int`; this file only
dispatches, importing a subcommand's module when that subcommand is asked for (so `ddavs-rt
--demo` never imports the training code). Errors a user can act on (`DdavsError`) are printed as
one line and exit with status 2; the runtime's other exit codes are in runtime/cli.py.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ddavs_rt import __version__
from ddavs_rt.errors import DdavsError

# subcommand -> (module, one-line help). Modules under ddavs_rt.train / ddavs_rt.calibration are
# the offline tools; they are imported only when their subcommand runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "model-info": ("ddavs_rt.model.info", "parameters and GFLOPs per module of a model config"),
    "synth": ("ddavs_rt.synth.cli", "generate a SynthAVS dataset"),
    "eval": ("ddavs_rt.train.evaluate", "J, F and J&F of a checkpoint per subset tag"),
    "train": ("ddavs_rt.train.cli", "train a model from a training config"),
    "build-bank": ("ddavs_rt.train.bank_builder", "build the prototype memory bank"),
    "export": ("ddavs_rt.engine.export", "export a checkpoint to ONNX"),
    "build-engine": ("ddavs_rt.calibration.tensorrt_build", "compile an ONNX file into a TensorRT engine"),
    "calibrate": ("ddavs_rt.calibration.cli", "INT8 post-training quantization of an ONNX file"),
    "bench": ("ddavs_rt.calibration.bench", "benchmark the model per backend and batch size"),
    "bench-pipeline": ("ddavs_rt.runtime.bench", "benchmark the whole streaming pipeline"),
    "bench-cluster": ("ddavs_rt.cluster.bench", "benchmark streams spread over Dask workers (cluster extra)"),
    "subscribe": ("ddavs_rt.publish.subscribe_cli", "receive published masks over ZeroMQ"),
    "view": ("ddavs_rt.view.cli", "a web page with the live overlays of every stream"),
    "keys": ("ddavs_rt.publish.keys", "make CURVE key pairs for an encrypted publisher"),
}
RUNTIME_MODULE = "ddavs_rt.runtime.cli"
# Packages of the full install that the torch-free runtime install (`setup.sh --runtime`) lacks.
FULL_INSTALL_ONLY = {"torch", "torchaudio", "onnx", "onnxscript", "safetensors", "matplotlib", "nncf"}
FULL_INSTALL = "needs the full install (torch, onnx): bash scripts/setup.sh, or pip install ddavs-rt"


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _load(module_name: str, command: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise DdavsError(f"'{command}' is not available in this build ({module_name} is missing)") from None
        _full_install_only(error, command)
        raise


def _full_install_only(error: ModuleNotFoundError, command: str) -> None:
    """A package of the full install is missing (a torch-free runtime install): one line saying so."""
    if error.name and error.name.split(".")[0] in FULL_INSTALL_ONLY:
        raise DdavsError(f"'{command}' {FULL_INSTALL} ({error.name} is not installed here)") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (the runtime logs warnings and errors unless -v; -vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            command = argv[0]
            module_name, help_text = SUBCOMMANDS[command]
            module = _load(module_name, command)
            parser = argparse.ArgumentParser(prog=f"ddavs-rt {command}", description=help_text)
            _common(parser)
            module.add_arguments(parser)
            args = parser.parse_args(argv[1:])
            _configure_logging(0 if args.quiet else 1 + args.verbose)  # offline jobs report progress
            try:
                return int(module.run(args) or 0)
            except ModuleNotFoundError as error:  # a lazy import inside the command
                _full_install_only(error, command)
                raise
        if not argv or argv[0] in ("-h", "--help"):
            _print_overview()
            return 0
        if argv and argv[0] == "--version":
            print(f"ddavs-rt {__version__}")
            return 0
        module = _load(RUNTIME_MODULE, "run")
        parser = argparse.ArgumentParser(prog="ddavs-rt", description="run the streaming runtime")
        _common(parser)
        module.add_arguments(parser)
        args = parser.parse_args(argv)
        _configure_logging(0 if args.quiet else args.verbose)
        return int(module.run(args) or 0)
    except DdavsError as error:
        print(f"ddavs-rt: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _print_overview() -> None:
    lines = [
        f"ddavs-rt {__version__}: real-time audio-visual segmentation (DDAVS)",
        "",
        "run live:   ddavs-rt --demo | --camera 0 --mic default | --rtsp URL [--rtsp URL ...] | --file PATH",
        "",
        "offline jobs:",
    ]
    width = max(len(name) for name in SUBCOMMANDS)
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", "ddavs-rt SUBCOMMAND --help for a subcommand's options; ddavs-rt --demo --help for the runtime's"]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
