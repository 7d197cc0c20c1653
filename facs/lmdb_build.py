"""LMDB stage: bootstrapping, two-pass means and Caffe LMDB pairs for every split part and stream.

For each configuration named in the profile's `lmdb.configs` (e.g. `faithful`, `best`), each
part of WORK/split.json (train, val, test) and each stream (spatial, flow) it writes

    WORK/lmdb/<config>/<part>_<stream>/          data LMDB   (Datum, C x H x W uint8)
    WORK/lmdb/<config>/<part>_<stream>_labels/   label LMDB  (Datum float_data, L x 1 x 1)
    WORK/lmdb/<config>/<part>_<stream>.json      manifest, written last (= the pair is complete)
    WORK/lmdb/<config>/<stream>_mean.binaryproto / .npy   per-channel means of the train part

Records: frames 0, s, 2s, ... of every clip with a face (s = train_/eval_frame_stride; with
`frames: labelled` only frames with a positive label). Spatial record = the masked crop (BGR,
3 channels; `reference: median` adds frame - clip median + 128, 6 channels). Flow record = the
frame's flow stack (facs.flow; layout x/y: 10 channels, xy: 20). Train spatial records get
bootstrapped copies (facs.augment); flow records never do.

A config may set a stream to null (e.g. `"spatial": null` in a flow-only variant such as a
layout-`x` trial) to build only the other stream.

Order: train databases are shuffled with a seeded permutation (Caffe's Data layer reads
sequentially); val/test are in (clip, frame) order, and the spatial and flow databases of one
val/test part hold the same (clip, frame) records in the same order, so scores fuse row by row.
Keys: "{i:08d}_{clip}_{frame:05d}" plus "_{aug}" for bootstrapped copies (e.g. "_r-6",
"_b+20"); they sort in record order.
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

from facs import augment
from facs.errors import FacsError
from facs.face import elliptic_mask
from facs.flow import FlowParams, flow_dir, flow_stack, stack_channels
from facs.lmdb_io import LmdbWriter, array_to_datum, labels_to_datum, tmp_path
from facs.means import ChannelMean, write_mean
from facs.profile import add_common_arguments, default_work, describe, load_profile, section
from facs.workdir import clip_parts, load_index, load_split, parallel_map, read_json, write_json

STREAMS = ("spatial", "flow")
PART_ORDER = ("train", "val", "test")


def lmdb_dir(work: Path, config: str) -> Path:
    return Path(work) / "lmdb" / config


def _clip_labels(clip: dict, labels: list[str], mode: str, n: int) -> np.ndarray:
    from facs.datasets.mmi import Clip, frame_labels

    y = frame_labels(Clip.from_json(clip), labels, mode)
    if len(y) >= n:
        return y[:n]
    return np.concatenate([y, np.zeros((n - len(y), len(labels)), y.dtype)])


def plan_records(
    work: Path, clips: list[dict], labels: list[str], opts: dict, part: str
) -> list[tuple[str, int, np.ndarray]]:
    """(clip id, frame, label row) of every record of a part, in (clip, frame) order."""
    stride = int(opts["train_frame_stride" if part == "train" else "eval_frame_stride"])
    out = []
    for clip in clips:
        meta_path = Path(work) / "faces" / f"{clip['id']}.json"
        if not meta_path.is_file():
            continue
        meta = read_json(meta_path, "face metadata")
        if not meta.get("face"):
            continue
        n = int(meta["frames"])
        y = _clip_labels(clip, labels, opts["label_mode"], n)
        for t in range(0, n, stride):
            if opts["frames"] == "labelled" and not y[t].any():
                continue
            out.append((clip["id"], t, y[t]))
    return out


def _job_fingerprint(job: dict, plan: list) -> str:
    h = hashlib.sha256()
    keys = ("config", "part", "stream", "opts", "spec", "size", "mask_axes", "half", "flow_fp")
    h.update(json.dumps({k: job[k] for k in keys}, sort_keys=True).encode())
    h.update(json.dumps(job["labels"]).encode())
    work = Path(job["work"])
    seen = set()
    for cid, t, y in plan:
        if cid not in seen:
            seen.add(cid)
            face = read_json(work / "faces" / f"{cid}.json", "face metadata")
            h.update(f"{cid}:{face['fingerprint']}:{face['frames']}".encode())
        h.update(f"{t}:{''.join(map(str, y.tolist()))};".encode())
    return h.hexdigest()[:20]


class _ClipCache:
    """Memory-mapped crops / flows of the clips, and their median frames."""

    def __init__(self, work: Path, stride: int | None):
        self.work, self.stride = Path(work), stride
        self.crops: dict[str, np.ndarray] = {}
        self.medians: dict[str, np.ndarray] = {}
        self.flows: dict[str, np.ndarray] = {}

    def crop(self, cid: str) -> np.ndarray:
        if cid not in self.crops:
            self.crops[cid] = np.load(self.work / "faces" / f"{cid}.npy", mmap_mode="r")
        return self.crops[cid]

    def median(self, cid: str) -> np.ndarray:
        if cid not in self.medians:
            self.medians[cid] = augment.median_reference(self.crop(cid))
        return self.medians[cid]

    def flow(self, cid: str) -> np.ndarray:
        if cid not in self.flows:
            path = flow_dir(self.work, self.stride) / f"{cid}.npy"
            if not path.is_file():
                raise FacsError(f"{path}: missing flow of clip {cid} (run `facs flow` first)")
            self.flows[cid] = np.load(path, mmap_mode="r")
        return self.flows[cid]


def _records(job: dict, plan: list) -> list[tuple[int, str]]:
    """(plan index, aug name or "") in the order they are written."""
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


def _spatial_record(cache: _ClipCache, cid: str, t: int, aug: str, spec: dict, mask) -> np.ndarray:
    frame = np.asarray(cache.crop(cid)[t])
    if spec.get("reference", "none") == "median":
        frame = augment.with_reference(frame, cache.median(cid))
    if aug:
        kind = "rot" if aug[0] == "r" else "bright"
        frame = augment.apply(frame, augment.Transform(kind, float(aug[1:])), mask)
    return np.ascontiguousarray(frame.transpose(2, 0, 1))


def build_pair(job: dict) -> dict:
    """Write one LMDB pair + manifest (+ the stream's means for train). Skips finished ones."""
    work, config, part, stream = Path(job["work"]), job["config"], job["part"], job["stream"]
    out = lmdb_dir(work, config)
    name = f"{part}_{stream}"
    manifest_path = out / f"{name}.json"
    plan = plan_records(work, job["clips"], job["labels"], job["opts"], part)
    fp = _job_fingerprint(job, plan)
    if not job["force"] and manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("fingerprint") == fp and (out / name).is_dir():
            return {"name": f"{config}/{name}", "status": "done", "records": 0, "s": 0.0}
    t0 = time.perf_counter()
    manifest_path.unlink(missing_ok=True)  # from here on the pair is not finished
    spec = job["spec"]
    stride = int(spec.get("stride", 1)) if stream == "flow" else None
    cache = _ClipCache(work, stride)
    recs = _records(job, plan)
    size = int(job["size"])
    mask = elliptic_mask(size, tuple(job["mask_axes"]))
    if stream == "spatial":
        channels = 6 if spec.get("reference", "none") == "median" else 3
    else:
        channels = stack_channels(spec.get("layout", "xy"), job["half"])
    rec_bytes = channels * size * size + 64
    map_size = max(1 << 26, int(2 * len(recs) * rec_bytes) + (1 << 26))
    label_map = max(1 << 24, int(2 * len(recs) * (8 * len(job["labels"]) + 64)) + (1 << 24))
    mean = ChannelMean(channels)
    keys_info = []
    bar = tqdm(total=len(recs), desc=f"{config}/{name}", unit="rec", disable=not job["bars"])
    with (
        LmdbWriter(out / name, map_size) as dw,
        LmdbWriter(out / f"{name}_labels", label_map) as lw,
    ):
        for i, (pi, aug) in enumerate(recs):
            cid, t, y = plan[pi]
            if stream == "spatial":
                arr = _spatial_record(cache, cid, t, aug, spec, mask)
            else:
                flows = cache.flow(cid)
                arr = flow_stack(flows, t, stride, spec.get("layout", "xy"), job["half"])
            key = f"{i:08d}_{cid}_{t:05d}" + (f"_{aug}" if aug else "")
            dw.put(key, array_to_datum(arr))
            lw.put(key, labels_to_datum(y))
            if part == "train":
                mean.add(arr)
            keys_info.append([cid, t, aug])
            bar.update(1)
    bar.close()
    ys = np.stack([plan[pi][2] for pi, _ in recs]) if recs else np.zeros((0, len(job["labels"])))
    manifest = {
        "name": f"{config}/{name}",
        "config": config,
        "part": part,
        "stream": stream,
        "data": name,
        "labels_db": f"{name}_labels",
        "count": len(recs),
        "shape": [channels, size, size],
        "crop": job["opts"].get("crop"),
        "labels": job["labels"],
        "label_mode": job["opts"]["label_mode"],
        "positives": ys.sum(axis=0).astype(int).tolist(),
        "mean": f"{stream}_mean.binaryproto",
        "mean_npy": f"{stream}_mean.npy",
        "shuffled": part == "train",
        "seed": job["seed"],
        "options": {**spec, **{k: v for k, v in job["opts"].items() if k != "configs"}},
        "clips": sorted({r[0] for r in keys_info}),
        "records": keys_info,
        "fingerprint": fp,
    }
    if part == "train":
        per_channel = mean.mean
        write_mean(out / f"{stream}_mean", per_channel, size, size)
        manifest["mean_per_channel"] = [round(float(v), 6) for v in per_channel]
    write_json(manifest_path, manifest, indent=None)  # last: marks the pair complete
    return {
        "name": f"{config}/{name}",
        "status": "built",
        "records": len(recs),
        "s": time.perf_counter() - t0,
    }


def _options(profile: dict, label_mode: str | None) -> dict:
    opts = dict(section(profile, "lmdb"))
    opts.setdefault("train_frame_stride", 1)
    opts.setdefault("eval_frame_stride", 1)
    opts.setdefault("frames", "all")
    opts.setdefault("augment", {})
    opts.setdefault("seed", 0)
    if label_mode:
        opts["label_mode"] = label_mode
    if opts["frames"] not in ("all", "labelled"):
        raise FacsError(f'{profile["_path"]}: lmdb.frames must be "all" or "labelled"')
    return opts


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
    index = load_index(work)
    split = load_split(work)
    opts = _options(profile, label_mode)
    opts.setdefault("label_mode", index.get("label_mode", "span"))
    all_configs = opts.get("configs") or {"faithful": {"spatial": {}, "flow": {}}}
    names = configs or list(all_configs)
    for n in names:
        if n not in all_configs:
            raise FacsError(f"{profile['_path']}: no lmdb config {n!r} (have {list(all_configs)})")
    faces = section(profile, "faces")
    flow = FlowParams.from_profile(profile.get("flow", {}))
    by_part = clip_parts(index, split)
    wanted_parts = [p for p in PART_ORDER if p in by_part] + [
        p for p in by_part if p not in PART_ORDER
    ]
    if parts:
        wanted_parts = [p for p in wanted_parts if p in parts]
    jobs = []
    base = {k: v for k, v in opts.items() if k != "configs"}
    for cname in names:
        for stream in streams or STREAMS:
            if stream in all_configs[cname] and all_configs[cname][stream] is None:
                continue  # "flow": null -> this config has no flow databases (and likewise)
            for part in wanted_parts:
                jobs.append(
                    {
                        "work": str(work),
                        "config": cname,
                        "part": part,
                        "stream": stream,
                        "spec": dict(all_configs[cname].get(stream, {})),
                        "opts": base,
                        "labels": list(index["labels"]),
                        "clips": by_part[part],
                        "size": int(faces.get("size", 72)),
                        "mask_axes": list(faces.get("mask_axes", [0.4, 0.5])),
                        "half": flow.half,
                        "flow_fp": flow.fingerprint(),
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


def build(work: Path, profile: dict, workers: int = 1, **kw) -> list[dict]:
    jobs = make_jobs(work, profile, bars=workers <= 1, **kw)
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


__all__ = ["build", "build_pair", "make_jobs", "plan_records", "lmdb_dir", "tmp_path"]
