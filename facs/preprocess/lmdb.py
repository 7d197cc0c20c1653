"""`facs lmdb`: bootstrapping, two-pass means and Caffe LMDB pairs for every part and stream.

For each configuration named in the profile's `lmdb.configs` (e.g. `faithful`, `best`), each
part of WORK/split.json (train, val, test) and each stream (spatial, flow) it writes

    WORK/lmdb/<config>/<part>_<stream>/          data LMDB   (Datum, C x H x W uint8)
    WORK/lmdb/<config>/<part>_<stream>_labels/   label LMDB  (Datum float_data, L x 1 x 1;
                                                  1, 0, or -1 = not coded: the nets' ignore_label)
    WORK/lmdb/<config>/<part>_<stream>.json      manifest, written last (= the pair is complete)
    WORK/lmdb/<config>/<stream>_mean.binaryproto per-channel means of the train part

Records: frames 0, s, 2s, ... of every clip with a face (s = train_/eval_frame_stride; with
`frames: labelled` only frames with a positive label; where a corpus leaves cells uncoded, the
stride runs over the frames with a coded cell, and the last of them is always kept), made by
facs.preprocess.records from the clip's crops and flows (the definition prediction uses too).
Train spatial records get bootstrapped copies (facs.preprocess.augment); flow records never
do. A config may set a stream to null (e.g. `"spatial": null`) to build only the other one.

Order: train databases are shuffled with a seeded permutation (Caffe's Data layer reads
sequentially); val/test are in (clip, frame) order, and the spatial and flow databases of one
val/test part hold the same (clip, frame) records in the same order, so scores fuse row by row.
Keys: facs.preprocess.workdir.record_key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facs.aus import UNKNOWN
from facs.caffe.lmdb import LmdbWriter, array_to_datum, labels_to_datum
from facs.datasets.index import Index, load_index
from facs.datasets.split import load_split
from facs.errors import FacsError
from facs.fileio import write_json
from facs.preprocess import augment
from facs.preprocess.means import ChannelMean, write_mean
from facs.preprocess.records import ClipRecords, StreamInput, elliptic_mask, to_chw
from facs.preprocess.workdir import (
    clip_parts,
    face_meta,
    faces_dir,
    lmdb_dir,
    load_crops,
    load_flows,
    parallel_map,
    record_key,
)
from facs.profile import add_common_arguments, default_work, describe, load_profile, section

STREAMS = ("spatial", "flow")
PART_ORDER = ("train", "val", "test")
Plan = list[tuple[str, int, np.ndarray]]  # (clip id, frame, label row) per planned record


def plan_records(work: Path, index: Index, clips: list, opts: dict, part: str) -> Plan:
    """(clip id, frame, label row) of every record of a part, in (clip, frame) order."""
    stride = int(opts["train_frame_stride" if part == "train" else "eval_frame_stride"])
    out = []
    for clip in clips:
        meta = face_meta(work, clip.id)
        if meta is None or not meta.get("face"):
            continue
        n = int(meta["frames"])
        y = index.frame_labels(clip, opts["label_mode"])
        # the video decoded to n frames; the header may have promised more or fewer
        y = y[:n] if len(y) >= n else np.pad(y, ((0, n - len(y)), (0, 0)))
        for t in _frames(y, stride, clip.has_unknown):
            if opts["frames"] == "labelled" and not (y[t] == 1).any():
                continue
            out.append((clip.id, t, y[t]))
    return out


def _frames(y: np.ndarray, stride: int, partly_coded: bool) -> list[int]:
    """Frames 0, s, 2s, ... of a clip. Where the coding leaves cells unknown, frames with no
    coded cell carry nothing to learn or score and are left out, the stride runs over the
    coded frames, and the last coded frame is always kept (CK+ codes only its peak, the last)."""
    if not partly_coded:
        return list(range(0, len(y), stride))
    coded = np.flatnonzero((y != UNKNOWN).any(axis=1)).tolist()
    picked = coded[::stride]
    if coded and picked[-1] != coded[-1]:
        picked.append(coded[-1])
    return picked


def _job_fingerprint(job: dict, plan: Plan) -> str:
    h = hashlib.sha256()
    keys = ("config", "part", "stream", "opts", "input")
    h.update(json.dumps({k: job[k] for k in keys}, sort_keys=True).encode())
    h.update(json.dumps(job["labels"]).encode())
    seen = set()
    for cid, t, y in plan:
        if cid not in seen:
            seen.add(cid)
            face = face_meta(Path(job["work"]), cid)
            h.update(f"{cid}:{face['fingerprint']}:{face['frames']}".encode())
        h.update(f"{t}:{''.join(map(str, y.tolist()))};".encode())
    return h.hexdigest()[:20]


def _order(job: dict, plan: Plan) -> list[tuple[int, str]]:
    """(plan index, aug name or "") of every record, in the order they are written."""
    recs: list[tuple[int, str]] = [(i, "") for i in range(len(plan))]
    if job["part"] == "train" and job["stream"] == "spatial":
        aug = job["opts"]["augment"]
        transforms = augment.transforms_from_profile(aug)
        for i, (cid, t, _y) in enumerate(plan):
            for tr in augment.choose(transforms, aug.get("per_frame"), f"{cid}_{t}", job["seed"]):
                recs.append((i, tr.name))
        recs.sort()
    if job["part"] == "train":
        name = f"{job['config']}/{job['part']}_{job['stream']}"
        rng = np.random.default_rng([int(job["seed"]), zlib.crc32(name.encode())])
        perm = rng.permutation(len(recs))
        recs = [recs[j] for j in perm]
    return recs


class _Clips:
    """ClipRecords of the clips a job reads, made from WORK's crops and flows on first use."""

    def __init__(self, work: Path, inp: StreamInput):
        self.work, self.inp = work, inp
        self.clips: dict[str, ClipRecords] = {}

    def __getitem__(self, cid: str) -> ClipRecords:
        if cid not in self.clips:
            flows = load_flows(self.work, cid, self.inp.stride) if self.inp.kind == "flow" else None
            self.clips[cid] = ClipRecords(self.inp, load_crops(self.work, cid), flows)
        return self.clips[cid]


def _record(clip: ClipRecords, t: int, aug: str, mask: np.ndarray) -> np.ndarray:
    """The record of frame t, bootstrapped by `aug` (a transform name, "" for none)."""
    if not aug:
        return clip.record(t)
    kind = "rot" if aug[0] == "r" else "bright"
    return to_chw(augment.apply(clip.frame(t), augment.Transform(kind, float(aug[1:])), mask))


def _manifest(job: dict, name: str, plan: Plan, recs: list, fp: str) -> dict:
    inp = StreamInput.from_json(job["input"])
    ys = np.stack([plan[pi][2] for pi, _ in recs]) if recs else np.zeros((0, len(job["labels"])))
    return {
        "name": f"{job['config']}/{name}",
        "config": job["config"],
        "part": job["part"],
        "stream": job["stream"],
        "data": name,
        "labels_db": f"{name}_labels",
        "count": len(recs),
        "shape": list(inp.shape),
        "crop": job["opts"].get("crop"),
        "labels": job["labels"],
        "label_mode": job["opts"]["label_mode"],
        "positives": (ys == 1).sum(axis=0).astype(int).tolist(),
        **(
            {"unknown": (ys == UNKNOWN).sum(axis=0).astype(int).tolist()}
            if (ys == UNKNOWN).any()
            else {}
        ),
        "mean": f"{job['stream']}_mean.binaryproto",
        "shuffled": job["part"] == "train",
        "seed": job["seed"],
        "options": {**job["spec"], **job["opts"]},
        "input": job["input"],
        "clips": sorted({plan[pi][0] for pi, _ in recs}),
        "records": [[plan[pi][0], plan[pi][1], aug] for pi, aug in recs],
        "fingerprint": fp,
    }


def _is_done(path: Path, folder: Path, fp: str) -> bool:
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        old = {}
    return old.get("fingerprint") == fp and folder.is_dir()


def build_pair(job: dict) -> dict:
    """Write one LMDB pair + manifest (+ the stream's means for train). Skips finished ones."""
    work, config, part, stream = Path(job["work"]), job["config"], job["part"], job["stream"]
    out = lmdb_dir(work, config)
    name = f"{part}_{stream}"
    manifest_path = out / f"{name}.json"
    plan = plan_records(work, job["index"], job["clips"], job["opts"], part)
    fp = _job_fingerprint(job, plan)
    if not job["force"] and _is_done(manifest_path, out / name, fp):
        return {"name": f"{config}/{name}", "status": "done", "records": 0, "s": 0.0}
    t0 = time.perf_counter()
    manifest_path.unlink(missing_ok=True)  # from here on the pair is not finished
    inp = StreamInput.from_json(job["input"])
    clips = _Clips(work, inp)
    recs = _order(job, plan)
    mask = elliptic_mask(inp.faces.size, inp.faces.mask_axes)
    rec_bytes = int(np.prod(inp.shape)) + 64
    map_size = max(1 << 26, int(2 * len(recs) * rec_bytes) + (1 << 26))
    label_map = max(1 << 24, int(2 * len(recs) * (8 * len(job["labels"]) + 64)) + (1 << 24))
    mean = ChannelMean(inp.channels)
    bar = tqdm(total=len(recs), desc=f"{config}/{name}", unit="rec", disable=not job["bars"])
    with (
        LmdbWriter(out / name, map_size) as dw,
        LmdbWriter(out / f"{name}_labels", label_map) as lw,
    ):
        for i, (pi, aug) in enumerate(recs):
            cid, t, y = plan[pi]
            arr = _record(clips[cid], t, aug, mask)
            key = record_key(i, cid, t, aug)
            dw.put(key, array_to_datum(arr))
            lw.put(key, labels_to_datum(y))
            if part == "train":
                mean.add(arr)
            bar.update(1)
    bar.close()
    manifest = _manifest(job, name, plan, recs, fp)
    if part == "train":
        write_mean(out / f"{stream}_mean.binaryproto", mean.mean, *inp.shape[1:])
        manifest["mean_per_channel"] = [round(float(v), 6) for v in mean.mean]
    write_json(manifest_path, manifest, indent=None)  # last: marks the pair complete
    seconds = time.perf_counter() - t0
    return {"name": f"{config}/{name}", "status": "built", "records": len(recs), "s": seconds}


def _options(profile: dict, index: Index, label_mode: str | None) -> dict:
    opts = {k: v for k, v in section(profile, "lmdb").items() if k != "configs"}
    opts.setdefault("train_frame_stride", 1)
    opts.setdefault("eval_frame_stride", 1)
    opts.setdefault("frames", "all")
    opts.setdefault("augment", {})
    opts.setdefault("seed", 0)
    opts.setdefault("label_mode", index.label_mode)
    if label_mode:
        opts["label_mode"] = label_mode
    if opts["frames"] not in ("all", "labelled"):
        raise FacsError(f'{profile["_path"]}: lmdb.frames must be "all" or "labelled"')
    return opts


def configs_of(profile: dict) -> dict:
    """The profile's LMDB configurations (name -> {"spatial": opts, "flow": opts, ...})."""
    return section(profile, "lmdb").get("configs") or {"faithful": {"spatial": {}, "flow": {}}}


def make_jobs(
    work: Path,
    profile: dict,
    configs: list[str] | None = None,
    parts: list[str] | None = None,
    streams: list[str] | None = None,
    label_mode: str | None = None,
    force: bool = False,
    bars: bool = True,
) -> list[dict]:
    index = load_index(work / "index.json")
    split = load_split(work / "split.json")
    opts = _options(profile, index, label_mode)
    all_configs = configs_of(profile)
    names = configs or list(all_configs)
    for n in names:
        if n not in all_configs:
            raise FacsError(f"{profile['_path']}: no lmdb config {n!r} (have {list(all_configs)})")
    by_part = clip_parts(index, split)
    wanted = [p for p in PART_ORDER if p in by_part] + [p for p in by_part if p not in PART_ORDER]
    wanted = [p for p in wanted if not parts or p in parts]
    jobs = []
    for cname in names:
        for stream in streams or STREAMS:
            spec = all_configs[cname].get(stream, {})
            if spec is None:
                continue  # "flow": null -> this config has no flow databases (and likewise)
            inp = StreamInput.for_stream(
                stream, spec, section(profile, "faces"), profile.get("flow", {})
            )
            for part in wanted:
                jobs.append(
                    {
                        "work": str(work),
                        "config": cname,
                        "part": part,
                        "stream": stream,
                        "spec": dict(spec),
                        "input": inp.to_json(),
                        "opts": opts,
                        "labels": list(index.labels),
                        "index": index,
                        "clips": by_part[part],
                        "seed": int(opts["seed"]),
                        "force": force,
                        "bars": bars,
                    }
                )
    return jobs


def cleanup_leftovers(work: Path) -> int:
    """Remove `.tmp` databases left by a killed run."""
    n = 0
    root = Path(work) / "lmdb"
    if root.is_dir():
        for p in root.glob("*/*.tmp"):
            if p.is_dir():
                shutil.rmtree(p)
                n += 1
    return n


def check_inputs(work: Path, jobs: list[dict]) -> None:
    """Refuse to build from missing inputs: a part without any face crop, or a clip whose
    crops or flows are not there (no empty databases, no zero means)."""
    for job in jobs:
        plan = plan_records(work, job["index"], job["clips"], job["opts"], job["part"])
        if not plan:
            raise FacsError(
                f"{faces_dir(work)}: no face crops for the {len(job['clips'])} clips of the "
                f"{job['part']} part (run `facs faces` first)"
            )
        inp = StreamInput.from_json(job["input"])
        for cid in sorted({c for c, _, _ in plan}):
            load_crops(work, cid)  # FacsError naming the missing file
            if inp.kind == "flow":
                load_flows(work, cid, inp.stride)


def build(work: Path, profile: dict, workers: int = 1, **kw) -> list[dict]:
    jobs = make_jobs(work, profile, bars=workers <= 1, **kw)
    check_inputs(work, jobs)
    removed = cleanup_leftovers(work)
    if removed:
        print(f"lmdb: removed {removed} unfinished database(s) of an interrupted run")
    return list(parallel_map(build_pair, jobs, workers, "lmdb", unit="db"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--config", action="append", help="only this lmdb config (repeatable)")
    parser.add_argument("--part", action="append", help="only this split part (repeatable)")
    parser.add_argument("--stream", action="append", choices=STREAMS, help="only this stream")
    parser.add_argument("--label-mode", choices=("span", "markers"), default=None)
    parser.add_argument("--force", action="store_true", help="rebuild finished databases")


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    print(describe(profile, "lmdb"))
    t0 = time.perf_counter()
    results = build(
        work,
        profile,
        workers=args.workers,
        configs=args.config,
        parts=args.part,
        streams=args.stream,
        label_mode=args.label_mode,
        force=args.force,
    )
    dt = time.perf_counter() - t0
    built = [r for r in results if r["status"] == "built"]
    records = sum(r["records"] for r in built)
    for r in sorted(built, key=lambda r: r["name"]):
        print(f"lmdb: {r['name']}: {r['records']} records in {r['s']:.1f} s")
    print(
        f"lmdb: {len(built)} databases built, {len(results) - len(built)} already done; "
        f"{records} records in {dt:.1f} s ({records / dt if dt > 0 else 0:.0f} records/s) "
        f"under {lmdb_dir(work, '*').parent}"
    )
    return 0
