"""The seed's usage block, as written."""

import vuma
from vuma import GPUWorkload, UnifiedMemoryManager


def test_seed_block_runs_verbatim_and_prints_three_steps(capsys):
    vuma = UnifiedMemoryManager()
    ai_task = GPUWorkload(id="AI_Training_Job", type="INFERENCE", complexity_score=0.95, memory_requirement_mb=4096, priority=10)
    vuma.process_workload(ai_task)
    out = capsys.readouterr().out
    for step in ("1. managed memory", "reserved lazily", "2. device", "why", "3. transfer plan"):
        assert step in out, out
    assert "AI_Training_Job" in out


def test_the_plan_is_a_report_with_repr_and_dict(host, capsys):
    w = GPUWorkload(id="AI_Training_Job", type="INFERENCE", complexity_score=0.95,
                    memory_requirement_mb=4096, priority=10)
    assert w.metadata_only and w.kind == "ai-inference" and w.memory_requirement == 4096 << 20
    r = host.process_workload(w, verbose=False)
    assert capsys.readouterr().out == ""
    assert r.planned
    assert "3. transfer plan" in repr(r)
    d = r.to_dict()
    assert d["planned"] is True
    assert d["plan"]["buffers"][0]["size"] == 4096 << 20
    assert d["plan"]["bytes_to_move"] == 0
    # Reserved lazily: the buffer exists, no memory is taken.
    b = r.reserved_buffer
    assert b is not None and b.nbytes == 4096 << 20
    s = host.stats()
    assert s["buffers"] == 1
    assert all(loc["bytes_in_use"] == 0 for loc in s["locations"])


def test_runs_are_not_printed_unless_asked(host, capsys):
    x = host.create_buffer(256)
    w = GPUWorkload("k", "UI", 0.1, kernel=vuma.kernels.scale_u32(), args=[x, 64, 3, 1])
    r = host.process_workload(w)
    assert capsys.readouterr().out == ""
    assert not r.planned
    host.process_workload(w, verbose=True)
    assert "workload `k`" in capsys.readouterr().out


def test_type_strings_and_priorities():
    for t, kind in [("INFERENCE", "ai-inference"), ("training", "ai-training"), ("UI", "ui"),
                    ("2D", "graphics-2d"), ("3d", "fp32-heavy"), ("RAY_TRACING", "ray-tracing"),
                    ("FP32", "fp32-heavy"), ("VIDEO", "light-compute"), ("COMPUTE", "light-compute"),
                    ("custom:fft", "custom:fft")]:
        assert GPUWorkload("w", t, memory_requirement_mb=1).kind == kind
    for name in vuma.KIND_NAMES:
        if not name.startswith("CUSTOM"):
            GPUWorkload("w", name)
    try:
        GPUWorkload("w", "QUANTUM")
    except vuma.InvalidArgumentError as e:
        assert "INFERENCE" in str(e) and "RAY_TRACING" in str(e)
    else:
        raise AssertionError("unknown type accepted")
    for bad in (-1, 11):
        try:
            GPUWorkload("w", "UI", priority=bad)
        except vuma.InvalidArgumentError as e:
            assert "0..=10" in str(e)
        else:
            raise AssertionError("priority out of range accepted")
    for bad in (-0.1, 1.5, float("nan")):
        try:
            GPUWorkload("w", "UI", complexity_score=bad)
        except vuma.InvalidArgumentError:
            pass
        else:
            raise AssertionError("complexity out of range accepted")


def test_metadata_only_workload_without_memory_is_an_error(host):
    try:
        host.process_workload(GPUWorkload("empty", "UI"))
    except vuma.InvalidArgumentError as e:
        assert "neither a memory requirement nor buffers" in str(e)
    else:
        raise AssertionError("empty plan accepted")
