#!/usr/bin/env bash
# Regenerates src/export/proto/onnx.rs (gatekit's ONNX types) from proto/onnx.proto3 with
# prost-build. Needs `protoc` (apt-get install protobuf-compiler, or PROTOC=/path/to/protoc);
# building gatekit does not. tests/onnx_proto.rs checks that the checked-in file is what this
# produces.
set -euo pipefail
cd "$(dirname "$0")/.."
GATEKIT_REGENERATE_ONNX_PROTO=1 cargo test --quiet --test onnx_proto generated_onnx_types_match_prost_build -- --nocapture
