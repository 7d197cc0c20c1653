"""`facs test-net`: score an LMDB with a trained deploy net and its caffemodel (Caffe's `caffe
test`), through the deploy runtime (facs.caffe.deploy), into a scores file
(facs.evaluation.scores).

    facs test-net --deploy D --weights W --data WORK/lmdb/x --labels WORK/lmdb/x_labels \
                  --mean mean.binaryproto --out scores.npz [--index WORK/index.json]

A one-vs-all net (2-way softmax) scores one label: `--column` names its label column.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facs.caffe.deploy import DeployNet, score_lmdb
from facs.caffe.lmdb import LmdbRecords, read_lmdb
from facs.datasets.index import load_index
from facs.errors import FacsError
from facs.evaluation.scores import Scores, save_scores
from facs.fileio import check_writable, read_json
from facs.preprocess.workdir import key_subjects


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deploy", required=True, help="deploy.prototxt")
    parser.add_argument("--weights", required=True, help="trained .caffemodel")
    parser.add_argument("--data", required=True, help="LMDB of Datum records (frames or flow)")
    parser.add_argument("--labels", required=True, help="parallel label LMDB (float_data)")
    parser.add_argument("--mean", help="mean .binaryproto of the training split")
    parser.add_argument("--crop", type=int, help="centre crop size (default: the net's input)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--label-names", help="JSON file with a 'labels' list (e.g. index.json)")
    parser.add_argument("--index", help="WORK/index.json, to record each frame's subject")
    parser.add_argument("--column", type=int, help="one-vs-all: label column this net scores")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", required=True, help="output .npz")


def run(args: argparse.Namespace) -> int:
    # Everything that can be wrong is checked before the scoring starts.
    check_writable(args.out)
    records = LmdbRecords(Path(args.data))
    keys = [k.decode("ascii", "replace") for k in records.keys]
    shape = tuple(records.array(0).shape)
    records.close()
    lkeys, y = read_lmdb(args.labels)
    y = y.reshape(len(y), -1)
    if lkeys != keys:
        raise FacsError(
            f"{args.labels}: its {len(lkeys)} keys differ from the {len(keys)} of {args.data}"
        )
    names = [str(i) for i in range(y.shape[1])]
    if args.label_names:
        names = [str(c) for c in read_json(args.label_names, "label list").get("labels", [])]
        if len(names) != y.shape[1]:
            raise FacsError(
                f"{args.label_names}: {len(names)} labels, the label LMDB has {y.shape[1]}"
            )
    if args.column is not None:
        if not 0 <= args.column < y.shape[1]:
            raise FacsError(f"--column {args.column}: the label LMDB has {y.shape[1]} columns")
        y, names = y[:, [args.column]], [names[args.column]]
    index = load_index(args.index) if args.index else None
    net = DeployNet.load(args.deploy, args.weights, args.mean, shape, args.crop, args.scale)
    with tqdm(total=len(y), desc="test-net", unit="frame") as bar:
        keys, (probs,) = score_lmdb([net], args.data, args.batch, bar.update)
    if probs.shape[1] != len(names):
        raise FacsError(f"{args.deploy}: {probs.shape[1]} outputs for {len(names)} labels")
    subjects = key_subjects(keys, index) if index is not None else None
    out = save_scores(args.out, Scores(keys, probs, y.astype(np.uint8), names, subjects))
    print(f"test-net: {len(keys)} records, {probs.shape[1]} outputs -> {out}")
    return 0
