"""Which ONNX operators an exported graph uses, and whether TensorRT's ONNX parser takes them all.

The parser's operator list is data (`tensorrt_onnx_ops.json`, with the TensorRT version it was
taken from). The graph walk covers the main graph, the subgraphs of control-flow nodes (If, Loop,
Scan) and the bodies of model-local functions (the dynamo exporter may emit them); a call to a
local function is not itself an operator, its body is.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from importlib import resources

import onnx

STANDARD_DOMAINS = ("", "ai.onnx")


@dataclasses.dataclass(frozen=True)
class TensorRTOps:
    tensorrt_version: str
    opset_min: int
    opset_max: int
    supported: frozenset[str]
    unsupported: frozenset[str]
    restrictions: dict[str, str]


@lru_cache(maxsize=1)
def load_tensorrt_ops() -> TensorRTOps:
    text = resources.files("ddavs_rt.engine").joinpath("tensorrt_onnx_ops.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return TensorRTOps(
        tensorrt_version=data["tensorrt_version"],
        opset_min=data["opset_min"],
        opset_max=data["opset_max"],
        supported=frozenset(data["supported"]),
        unsupported=frozenset(data["unsupported"]),
        restrictions=dict(data["restrictions"]),
    )


def graph_ops(model: onnx.ModelProto) -> set[tuple[str, str]]:
    """Every (domain, op_type) the model executes: graph, nested subgraphs and local function bodies."""
    local_functions = {(f.domain, f.name) for f in model.functions}
    found: set[tuple[str, str]] = set()

    def walk_nodes(nodes) -> None:
        for node in nodes:
            key = (node.domain or "", node.op_type)
            if key not in local_functions:
                found.add(key)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk_nodes(attribute.g.node)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    for graph in attribute.graphs:
                        walk_nodes(graph.node)

    walk_nodes(model.graph.node)
    for function in model.functions:
        walk_nodes(function.node)
    return found


def opset_of(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in STANDARD_DOMAINS:
            return entry.version
    raise ValueError("the model imports no standard ONNX opset")


def tensorrt_problems(model: onnx.ModelProto, ops: TensorRTOps | None = None) -> list[str]:
    """Human-readable reasons TensorRT's parser would refuse this graph; empty when it is fine."""
    ops = ops or load_tensorrt_ops()
    problems = []
    opset = opset_of(model)
    if not ops.opset_min <= opset <= ops.opset_max:
        problems.append(f"opset {opset} is outside TensorRT {ops.tensorrt_version}'s range {ops.opset_min}-{ops.opset_max}")
    for domain, op_type in sorted(graph_ops(model)):
        if domain not in STANDARD_DOMAINS:
            problems.append(f"{domain}::{op_type} is not a standard ONNX operator")
        elif op_type not in ops.supported:
            problems.append(f"{op_type} is not supported by TensorRT {ops.tensorrt_version}'s ONNX parser")
    return problems
