import pytest
import torch

from zhllm import profiles, runtime
from zhllm.errors import ConfigError, ZhllmError


def test_profile_from_env(monkeypatch):
    monkeypatch.setenv("ZHLLM_PROFILE", "colab")
    assert profiles.current() == "colab"
    assert profiles.current("full") == "full"  # an explicit name wins over the variable


def test_profile_autodetect_without_cuda(monkeypatch):
    monkeypatch.delenv("ZHLLM_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiles.current() == "tiny"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profiles.current() == "colab"


def test_unknown_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("ZHLLM_PROFILE", "huge")
    with pytest.raises(ConfigError, match="tiny, colab, full"):
        profiles.current()
    assert issubclass(ConfigError, ZhllmError)


def test_pick_falls_back_from_full_to_colab():
    table = {"tiny": 1, "colab": 2}
    assert profiles.pick(table, "tiny") == 1
    assert profiles.pick(table, "full") == 2
    with pytest.raises(ConfigError):
        profiles.pick({"tiny": 1}, "colab")


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16), ((6, 1), torch.float16)])
def test_dtype_rule_by_compute_capability(monkeypatch, capability, expected):
    # a T4 (7.5) must get fp16 even though torch may claim bf16 support there
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert runtime.dtype_for("cuda") == expected


def test_cpu_is_fp32():
    assert runtime.dtype_for("cpu") == torch.float32


def test_seed_makes_random_numbers_repeat():
    runtime.seed_everything(7)
    a = torch.rand(3)
    runtime.seed_everything(7)
    assert torch.equal(a, torch.rand(3))


def test_banner_names_versions_device_and_dtype():
    text = runtime.banner("tiny")
    for word in ("torch", "transformers", "trl", "peft", "device", "dtype", "profile", "tiny"):
        assert word in text


def test_check_prints_and_fails_only_in_strict_mode(monkeypatch, capsys):
    monkeypatch.delenv(runtime.STRICT_VAR, raising=False)
    assert runtime.check(True, "holds") is True
    assert runtime.check(False, "misses", "because") is False
    out = capsys.readouterr().out
    assert "✓ holds" in out and "✗ misses — because" in out
    monkeypatch.setenv(runtime.STRICT_VAR, "1")
    assert runtime.check(True, "holds")
    with pytest.raises(AssertionError, match="misses"):
        runtime.check(False, "misses", "because")


def test_bitsandbytes_optional_kernel_warning_is_silenced(caplog):
    import logging

    import zhllm  # noqa: F401  (sets the level on import)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community")
    assert logger.getEffectiveLevel() == logging.ERROR and not caplog.records


def test_smoke_sizes_replace_only_the_keys_a_stage_has_and_never_tiny(monkeypatch):
    from zhllm import sft

    monkeypatch.setenv(profiles.SMOKE_VAR, "1")
    colab = profiles.pick(sft.SETTINGS, "colab")
    assert colab["max_steps"] == profiles.SMOKE["max_steps"] and colab["hub_rows"] == profiles.SMOKE["hub_rows"]
    assert colab["quantization"] == "4bit" and colab["hub_dataset"] == sft.SETTINGS["colab"]["hub_dataset"]
    assert sft.SETTINGS["colab"]["max_steps"] == 600, "the table itself is untouched"
    assert profiles.pick(sft.SETTINGS, "tiny") == sft.SETTINGS["tiny"]
    assert "smoke" in runtime.banner("colab")
    monkeypatch.setenv(profiles.SMOKE_VAR, "0")
    assert profiles.pick(sft.SETTINGS, "colab") == sft.SETTINGS["colab"]
