from __future__ import annotations

from uservec.training.environment import cpu_model, environment


def test_the_cpu_model_comes_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU @ 2.00GHz\nflags\t: x\n")
    assert cpu_model(info) == "Test CPU @ 2.00GHz"
    assert cpu_model(tmp_path / "missing")  # falls back to platform, never empty


def test_the_environment_block_names_machine_and_versions_as_strings():
    env = environment()
    assert {"cpu", "python", "torch", "onnxruntime", "code_version"} <= set(env)
    assert env["torch"] and env["python"].count(".") == 2
    # strings only: a report's numbers are its metrics
    assert all(value is None or isinstance(value, str) for value in env.values())
