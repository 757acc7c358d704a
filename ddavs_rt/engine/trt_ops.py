"""Check an ONNX graph against the documented rules of TensorRT's ONNX parser, before any GPU sees it.

The rules are data (`tensorrt_onnx_ops.json`: onnx-tensorrt's operator support matrix with each
operator's supported types and restrictions, the opset range of every TensorRT edition the
project supports, and the parser's rule that uint8 exists only as a network input or output),
with the edition and source they were read from. The check:

- opset inside every supported edition's range;
- every operator supported (and not newer than the oldest supported edition);
- each node's data type (its first input, or its first output when it has none) among the
  operator's supported types, so a uint8 graph input may only meet a Cast;
- no uint8 (input/output-only) tensor made inside the graph;
- the restrictions that can be read off a graph: attribute values, constant inputs, zero points,
  unused extra outputs.

The walk covers the main graph, the subgraphs of control-flow nodes (If, Loop, Scan) and the
bodies of model-local functions (the dynamo exporter may emit them); a call to a local function
is not itself an operator, its body is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources
from typing import Any

import onnx
from onnx import numpy_helper

STANDARD_DOMAINS = ("", "ai.onnx")

# operators.md type names -> ONNX element types (DOUBLE rides on FP32: the parser casts it down)
TYPE_NAMES: dict[str, tuple[int, ...]] = {
    "FP32": (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE),
    "FP16": (onnx.TensorProto.FLOAT16,),
    "BF16": (onnx.TensorProto.BFLOAT16,),
    "FP8": (onnx.TensorProto.FLOAT8E4M3FN,),
    "FP4": (getattr(onnx.TensorProto, "FLOAT4E2M1", -1),),
    "INT4": (onnx.TensorProto.INT4,),
    "INT8": (onnx.TensorProto.INT8,),
    "INT32": (onnx.TensorProto.INT32,),
    "INT64": (onnx.TensorProto.INT64,),
    "UINT8": (onnx.TensorProto.UINT8,),
    "BOOL": (onnx.TensorProto.BOOL,),
}


def type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


@dataclasses.dataclass(frozen=True)
class OperatorRule:
    types: frozenset[int]
    type_names: tuple[str, ...]
    restriction: str
    checks: tuple[dict[str, Any], ...]
    since: str | None


@dataclasses.dataclass(frozen=True)
class TensorRTOps:
    """The parser rules: `tensorrt_version` names the editions they hold for (e.g. '10.0-11.x')."""

    tensorrt_version: str
    operators_edition: str
    opset_min: int
    opset_max: int
    oldest_edition: str
    operators: dict[str, OperatorRule]
    unsupported: frozenset[str]
    io_only_types: frozenset[int]
    io_only_producers: frozenset[str]
    sources: tuple[str, ...]

    @property
    def supported(self) -> frozenset[str]:
        return frozenset(self.operators)


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def parse_rules(data: dict[str, Any]) -> TensorRTOps:
    editions = data["editions"]
    operators = {}
    for name, entry in data["operators"].items():
        unknown = [t for t in entry["types"] if t not in TYPE_NAMES]
        if unknown:
            raise ValueError(f"tensorrt_onnx_ops.json: {name} lists unknown types {unknown}")
        operators[name] = OperatorRule(
            types=frozenset(code for t in entry["types"] for code in TYPE_NAMES[t]),
            type_names=tuple(entry["types"]),
            restriction=entry.get("restriction", ""),
            checks=tuple(entry.get("checks", ())),
            since=entry.get("since"),
        )
    io_only = data["intermediate_only_io_types"]
    oldest = min(editions, key=lambda e: _version_key(e["tensorrt"]))
    return TensorRTOps(
        tensorrt_version=data["tensorrt_versions"],
        operators_edition=data["operators_edition"],
        opset_min=max(e["opset_min"] for e in editions),
        opset_max=min(e["opset_max"] for e in editions),
        oldest_edition=oldest["tensorrt"],
        operators=operators,
        unsupported=frozenset(data["unsupported"]),
        io_only_types=frozenset(code for t in io_only["types"] for code in TYPE_NAMES[t]),
        io_only_producers=frozenset(io_only["allowed_producers"]),
        sources=tuple([e["source"] for e in editions] + [io_only["source"]]),
    )


@lru_cache(maxsize=1)
def load_tensorrt_ops() -> TensorRTOps:
    text = resources.files("ddavs_rt.engine").joinpath("tensorrt_onnx_ops.json").read_text(encoding="utf-8")
    return parse_rules(json.loads(text))


def _walk(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    for node in nodes:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attribute.g.node)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    yield from _walk(graph.node)


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    yield from _walk(model.graph.node)
    for function in model.functions:
        yield from _walk(function.node)


def graph_ops(model: onnx.ModelProto) -> set[tuple[str, str]]:
    """Every (domain, op_type) the model executes: graph, nested subgraphs and local function bodies."""
    local_functions = {(f.domain, f.name) for f in model.functions}
    return {(n.domain or "", n.op_type) for n in _all_nodes(model) if (n.domain or "", n.op_type) not in local_functions}


def opset_of(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in STANDARD_DOMAINS:
            return entry.version
    raise ValueError("the model imports no standard ONNX opset")


class _GraphFacts:
    """Element types and constant values of the model's tensors (after ONNX shape inference)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # a graph shape inference cannot take: use the types the file carries
            inferred = model
        self.types: dict[str, int] = {}
        self.constants: dict[str, onnx.TensorProto] = {}
        graphs = [inferred.graph] + [a.g for n in _walk(inferred.graph.node) for a in n.attribute
                                     if a.type == onnx.AttributeProto.GRAPH]
        for graph in graphs:
            for value in [*graph.input, *graph.output, *graph.value_info]:
                if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                    self.types[value.name] = value.type.tensor_type.elem_type
            for init in graph.initializer:
                self.types[init.name] = init.data_type
                self.constants[init.name] = init
        for node in _walk(inferred.graph.node):
            if node.op_type == "Constant" and node.output:
                for attribute in node.attribute:
                    if attribute.name == "value":
                        self.constants[node.output[0]] = attribute.t
                        self.types.setdefault(node.output[0], attribute.t.data_type)
        self.graph_inputs = {v.name for v in model.graph.input} - {i.name for i in model.graph.initializer}
        self.graph_outputs = {v.name for v in model.graph.output}


def _node_label(node: onnx.NodeProto) -> str:
    return f"node {node.name or (node.output[0] if node.output else '?')!r} ({node.op_type})"


def _attribute(node: onnx.NodeProto, name: str) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return None


def _check(node: onnx.NodeProto, check: dict[str, Any], facts: _GraphFacts) -> str | None:
    """The reason `node` breaks one machine-readable restriction, or None."""
    kind = check["kind"]
    if kind == "attribute_in":
        value = _attribute(node, check["name"])
        if value is not None and value not in check["values"]:
            return f"{check['name']}={value!r} (TensorRT takes {', '.join(check['values'])})"
    elif kind == "attribute_equals":
        value = _attribute(node, check["name"])
        if value is not None and value != check["value"]:
            return f"{check['name']}={value!r} (TensorRT needs {check['value']!r})"
    elif kind == "attribute_all_ones":
        value = _attribute(node, check["name"])
        if value and any(v != 1 for v in value):
            return f"{check['name']}={list(value)} (must be empty or all ones)"
    elif kind == "attribute_length_in":
        value = _attribute(node, check["name"])
        if value is not None and len(value) not in check["values"]:
            return f"{len(value)}-D {check['name']} (TensorRT takes {' or '.join(map(str, check['values']))}-D)"
    elif kind == "attributes_absent":
        present = [name for name in check["names"] if _attribute(node, name) is not None]
        if present:
            return f"attribute {', '.join(present)} is unsupported"
    elif kind == "inputs_absent_from":
        extra = [name for name in node.input[check["index"]:] if name]
        if extra:
            return f"inputs {extra} are unsupported"
    elif kind == "outputs_unused_from":
        extra = [name for name in node.output[check["index"]:] if name]
        if extra:
            return f"outputs {extra} are unsupported (only the first output is)"
    elif kind == "input_constant":
        index = check["index"]
        if index < len(node.input) and node.input[index] and node.input[index] not in facts.constants:
            return f"input {index} ({node.input[index]!r}) must be a build-time constant"
    elif kind == "input_zero":
        index = check["index"]
        if index < len(node.input) and node.input[index]:
            tensor = facts.constants.get(node.input[index])
            if tensor is None:
                return f"input {index} ({node.input[index]!r}) must be a constant zero"
            if numpy_helper.to_array(tensor).astype("float64").any():
                return f"input {index} ({node.input[index]!r}) must be zero"
    else:
        raise ValueError(f"tensorrt_onnx_ops.json: unknown check kind {kind!r}")
    return None


def tensorrt_problems(model: onnx.ModelProto, ops: TensorRTOps | None = None) -> list[str]:
    """Why TensorRT's ONNX parser would refuse this graph, one line each; empty when it follows the rules."""
    ops = ops or load_tensorrt_ops()
    problems: list[str] = []
    opset = opset_of(model)
    if not ops.opset_min <= opset <= ops.opset_max:
        problems.append(f"opset {opset} is outside the range every TensorRT {ops.tensorrt_version} parser takes "
                        f"({ops.opset_min}-{ops.opset_max})")
    local_functions = {(f.domain, f.name) for f in model.functions}
    facts = _GraphFacts(model)
    unsupported_seen: set[str] = set()
    for node in _all_nodes(model):
        domain = node.domain or ""
        if (domain, node.op_type) in local_functions:
            continue
        if domain not in STANDARD_DOMAINS:
            if node.op_type not in unsupported_seen:
                problems.append(f"{domain}::{node.op_type} is not a standard ONNX operator")
                unsupported_seen.add(node.op_type)
            continue
        rule = ops.operators.get(node.op_type)
        if rule is None:
            if node.op_type not in unsupported_seen:
                problems.append(f"{node.op_type} is not supported by TensorRT's ONNX parser "
                                f"(operators.md, TensorRT {ops.operators_edition})")
                unsupported_seen.add(node.op_type)
            continue
        if rule.since and _version_key(rule.since) > _version_key(ops.oldest_edition):
            problems.append(f"{_node_label(node)}: {node.op_type} needs TensorRT {rule.since}+, "
                            f"the project supports TensorRT {ops.oldest_edition}+")
        data = next((name for name in node.input if name), None) or (node.output[0] if node.output else None)
        elem = facts.types.get(data) if data else None
        if elem is not None and elem not in rule.types:
            problems.append(f"{_node_label(node)}: {type_name(elem)} tensor {data!r}; TensorRT's {node.op_type} "
                            f"takes {', '.join(rule.type_names)}")
        for output in node.output:
            if (output and facts.types.get(output) in ops.io_only_types and output not in facts.graph_outputs
                    and node.op_type not in ops.io_only_producers):
                problems.append(f"{_node_label(node)} makes {type_name(facts.types[output])} tensor {output!r} "
                                f"inside the graph; TensorRT takes it only as a network input or output")
        for check in rule.checks:
            reason = _check(node, check, facts)
            if reason:
                problems.append(f"{_node_label(node)}: {reason}")
    return problems


def problems_line(problems: list[str], ops: TensorRTOps | None = None) -> str:
    """All of a graph's problems as one line (the first one in full, then how many more)."""
    ops = ops or load_tensorrt_ops()
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (f"the graph breaks TensorRT {ops.tensorrt_version}'s ONNX parser rules "
            f"(onnx-tensorrt operators.md {ops.operators_edition}): {problems[0]}{more}")
