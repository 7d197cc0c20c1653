"""caffe_pb2.py must be what protoc makes of caffe.proto (scripts/gen_proto.sh)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "facs" / "caffe"


def test_generated_module_matches_proto(tmp_path):
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}", f"--python_out={tmp_path}"]
    subprocess.run(cmd + [str(ROOT / "caffe.proto")], check=True)
    assert (tmp_path / "caffe_pb2.py").read_text() == (ROOT / "caffe_pb2.py").read_text(), (
        "facs/caffe/caffe_pb2.py is stale: run scripts/gen_proto.sh"
    )
