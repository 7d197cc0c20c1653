#!/usr/bin/env bash
# Regenerate facs/caffe/caffe_pb2.py from facs/caffe/caffe.proto (needs grpcio-tools,
# installed with the test extras). tests/test_proto_sync.py checks the two agree.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -Ifacs/caffe --python_out=facs/caffe facs/caffe/caffe.proto
echo "wrote facs/caffe/caffe_pb2.py"
